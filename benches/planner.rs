//! Planner speed on real and generated batches: `cargo bench --bench planner`.
//! The README's performance table quotes these figures.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use cfpurge::planner::{Capacity, Settings, plan};

mod common;

fn planner(c: &mut Criterion) {
    let trace = common::trace();
    let settings = Settings::default();
    let mut group = c.benchmark_group("planner");

    let all = common::all_entries(&trace);
    group.throughput(Throughput::Elements(all.len() as u64));
    group.bench_function("astro_all_as_one_batch", |b| {
        b.iter(|| black_box(plan(black_box(&all), Capacity::AWS, &settings)))
    });

    let days = common::windows(&trace, 86_400);
    let entries: usize = days.iter().map(Vec::len).sum();
    group.throughput(Throughput::Elements(entries as u64));
    group.bench_function("astro_each_day_a_batch", |b| {
        b.iter(|| {
            for day in &days {
                black_box(plan(black_box(day), Capacity::AWS, &settings));
            }
        })
    });

    let million = common::generated(&trace, 1_000_000, 42);
    group.throughput(Throughput::Elements(million.len() as u64));
    group.sample_size(10);
    group.bench_function("generated_1m", |b| {
        b.iter(|| black_box(plan(black_box(&million), Capacity::AWS, &settings)))
    });
    group.finish();
}

criterion_group!(benches, planner);
criterion_main!(benches);
