//! Catalog building and least-blast planning against it:
//! `cargo bench --bench catalog`. docs/least-blast.md quotes these figures.

use std::hint::black_box;
use std::io::Write;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use cfpurge::catalog::file;
use cfpurge::planner::{Capacity, Settings, least_blast};

mod common;

const OBJECTS: usize = 1_000_000;

fn catalog(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("site.txt");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    for p in common::site_paths(OBJECTS) {
        writeln!(out, "{p}").expect("write");
    }
    drop(out);

    let mut group = c.benchmark_group("catalog");
    group.sample_size(10);
    group.throughput(Throughput::Elements(OBJECTS as u64));
    group.bench_function("build_1m_from_file", |b| {
        b.iter(|| black_box(file::load(&path).expect("load")))
    });
    group.finish();

    let catalog = file::load(&path).expect("load");
    let settings = Settings::default();
    let mut group = c.benchmark_group("least_blast");
    for (name, n, samples) in [("3k_entries", 3_000, 100), ("1m_entries", 1_000_000, 10)] {
        let batch = common::site_entries(OBJECTS, n, 7);
        group.sample_size(samples);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("{name}_against_1m_catalog"), |b| {
            b.iter(|| {
                black_box(least_blast::plan(
                    black_box(&batch),
                    Capacity::AWS,
                    &settings,
                    &catalog,
                    50.0,
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, catalog);
criterion_main!(benches);
