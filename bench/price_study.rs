//! Study of the budget's price against the offline optimum.
//!
//! `price_study dump TRACE MONTHLY OUT.json`: replays TRACE, writes each batch
//! (time, billed, blast, price, curve of what it covered, allowance).
//! `price_study analyse OUT.json MONTHLY`: per month, cfpurge against the
//! paced optimum and the best fixed price in hindsight.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cfpurge::budget::Month;
use cfpurge::catalog;
use cfpurge::config::Config;
use cfpurge::path::CfPath;
use cfpurge::planner::optimum::{self, Batch as OBatch};
use cfpurge::planner::{Capacity, Entry, Settings, least_blast};
use cfpurge::replay::{self, ReplayOptions};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone)]
struct B {
    at: u64,
    billed: u64,
    blast: u64,
    price: f64,
    allowance: u64,
    curve: Vec<(usize, u64)>,
}

fn config(monthly: u64) -> Config {
    let text = format!(
        r#"
[source]
kind = "local"
[distributions.www]
id = "EWWW"
[routing]
default_distribution = "www"
[coalesce]
strategy = "least_blast"
blast_per_path = 50
[cloudfront]
mode = "simulate"
[budget]
monthly_paths = {monthly}
burst_paths = 100
on_exhausted = "hold"
"#
    );
    Config::from_parts(Some(&text), "study", std::iter::empty()).expect("config")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args[0].as_str() {
        "dump" => dump(&args[1], args[2].parse().unwrap(), &args[3]),
        "analyse" => analyse(&args[1], args[2].parse().unwrap()),
        "month" => month(&args[1], &args[2]),
        "sim" => sim(&args[1], args[2].parse().unwrap(), &args[3..]),
        _ => panic!("dump | analyse"),
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn dump(trace: &str, monthly: u64, out: &str) {
    let config = config(monthly);
    let text = std::fs::read_to_string(trace).unwrap();
    let (lines, bad) = replay::read_trace(&text, SystemTime::now());
    assert!(bad.is_empty());
    let cat = catalog::file::load(std::path::Path::new(
        "/work/wt-price3/benches/data/astro-docs-tree.txt",
    ))
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let r = rt.block_on(replay::run(
        &config,
        &lines,
        &ReplayOptions {
            catalog: Some(cat.clone()),
            optimum: false,
            ledger: None,
        },
    ));
    let start = Month::of(lines[0].at).start();
    let settings = Settings::from(&config.coalesce);
    let bs: Vec<B> = r
        .batches
        .iter()
        .map(|b| {
            let at = start + Duration::from_secs_f64(b.t);
            let entries: Vec<Entry> = b
                .covered
                .iter()
                .map(|p| Entry::new(CfPath::parse(p).unwrap(), 0))
                .collect();
            let cap = Capacity {
                paths: usize::MAX,
                ..Capacity::AWS
            };
            B {
                at: secs(at),
                billed: b.paths.len() as u64,
                blast: 0,
                price: b.price,
                allowance: cfpurge::budget::allowance(&config.budget, at),
                curve: least_blast::frontier(&entries, cap, &settings, &cat),
            }
        })
        .collect();
    // blast: from the monthly table is not per batch; recompute from curve
    // would be wrong, so take the record's blast via months.
    let bs: Vec<B> = bs
        .into_iter()
        .zip(&r.batches)
        .map(|(mut b, rb)| {
            b.blast = batch_blast(rb);
            b
        })
        .collect();
    std::fs::write(out, serde_json::to_string(&bs).unwrap()).unwrap();
    for m in &r.months {
        eprintln!(
            "{} req {} billed {} blast {:?} price_end {:.3}",
            m.month, m.requested, m.billed, m.blast, m.price_end
        );
    }
}

fn batch_blast(b: &cfpurge::replay::BatchRecord) -> u64 {
    b.blast
}

/// Range of prices at which point k of the curve is the choice.
fn price_range(curve: &[(usize, u64)], k: usize) -> (f64, f64) {
    let (b, f) = (curve[k].0 as f64, curve[k].1 as f64);
    let mut low: f64 = 0.0;
    let mut high = f64::INFINITY;
    for (j, &(b2, f2)) in curve.iter().enumerate() {
        let (b2, f2) = (b2 as f64, f2 as f64);
        if j > k {
            low = low.max((f - f2) / (b2 - b));
        } else if j < k {
            high = high.min((f2 - f) / (b - b2));
        }
    }
    (low, high)
}

fn choose(curve: &[(usize, u64)], price: f64, room: u64) -> Option<(usize, u64)> {
    curve
        .iter()
        .copied()
        .filter(|p| p.0 as u64 <= room)
        .min_by(|a, b| {
            (price * a.0 as f64 + a.1 as f64)
                .total_cmp(&(price * b.0 as f64 + b.1 as f64))
                .then(a.0.cmp(&b.0))
        })
}

/// Fixed price with the hard cap: (billed, blast, held batches).
fn fixed(batches: &[&B], price: f64) -> (u64, u64, u64) {
    let mut used = 0;
    let mut blast = 0;
    let mut held = 0;
    for b in batches {
        let room = b.allowance.saturating_sub(used);
        match choose(&b.curve, price, room) {
            Some(p) => {
                used += p.0 as u64;
                blast += p.1;
            }
            None => {
                // As if it took its fewest paths anyway.
                held += 1;
                used += b.curve[0].0 as u64;
                blast += b.curve[0].1;
            }
        }
    }
    (used, blast, held)
}

fn analyse(file: &str, monthly: u64) {
    let bs: Vec<B> = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let mut months: Vec<(Month, Vec<&B>)> = Vec::new();
    for b in &bs {
        let m = Month::of(UNIX_EPOCH + Duration::from_secs(b.at));
        match months.last_mut() {
            Some((mm, v)) if *mm == m => v.push(b),
            _ => months.push((m, vec![b])),
        }
    }
    let (mut tc, mut to, mut tf) = (0, 0, 0);
    println!("month  n  | cf billed blast | opt billed blast | ratio | cf price min/med/max | opt price lo/hi (spread) | best fixed p billed blast held");
    for (m, v) in &months {
        let batches: Vec<OBatch<'_>> = v
            .iter()
            .map(|b| OBatch {
                curve: &b.curve,
                limit: b.allowance,
            })
            .collect();
        let opt = optimum::paced(&batches);
        let cf_billed: u64 = v.iter().map(|b| b.billed).sum();
        let cf_blast: u64 = v.iter().map(|b| b.blast).sum();
        let mut prices: Vec<f64> = v.iter().map(|b| b.price).collect();
        prices.sort_by(f64::total_cmp);
        let (ob, of, ranges) = match &opt {
            Some(a) => {
                let ranges: Vec<(f64, f64)> = v
                    .iter()
                    .zip(&a.points)
                    .map(|(b, p)| {
                        let k = b.curve.iter().position(|q| q == p).unwrap();
                        price_range(&b.curve, k)
                    })
                    .collect();
                (a.billed, a.blast, ranges)
            }
            None => (0, 0, vec![]),
        };
        // Weighted: the opt price lows/highs over batches with more than one point.
        let informative: Vec<&(f64, f64)> = ranges
            .iter()
            .zip(v.iter())
            .filter(|(_, b)| b.curve.len() > 1)
            .map(|(r, _)| r)
            .collect();
        let lo = informative.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
        let hi = informative
            .iter()
            .map(|r| r.1)
            .fold(0.0f64, |a, b| a.max(if b.is_finite() { b } else { 0.0 }));
        // Best fixed price in hindsight.
        let mut best = (f64::NAN, 0, u64::MAX, 0);
        let mut p = 0.01;
        while p < 1e5 {
            let (u, bl, h) = fixed(v, p);
            if bl < best.2 {
                best = (p, u, bl, h);
            }
            p *= 1.05;
        }
        tc += cf_blast;
        to += of;
        tf += best.2;
        println!(
            "{m} {:4} | {:5} {:6} | {:5} {:6} | {:5.2} | {:.2}/{:.2}/{:.2} | {:.2}/{:.2} | {:.2} {} {} {}",
            v.len(),
            cf_billed,
            cf_blast,
            ob,
            of,
            cf_blast as f64 / of.max(1) as f64,
            prices[0],
            prices[prices.len() / 2],
            prices[prices.len() - 1],
            lo,
            hi,
            best.0,
            best.1,
            best.2,
            best.3
        );
        let _ = monthly;
    }
    println!(
        "total cf {tc} opt {to} ratio {:.3} best-fixed {tf} ratio {:.3}",
        tc as f64 / to as f64,
        tf as f64 / to as f64
    );
}

fn months_of(bs: &[B]) -> Vec<(Month, Vec<&B>)> {
    let mut months: Vec<(Month, Vec<&B>)> = Vec::new();
    for b in bs {
        let m = Month::of(UNIX_EPOCH + Duration::from_secs(b.at));
        match months.last_mut() {
            Some((mm, v)) if *mm == m => v.push(b),
            _ => months.push((m, vec![b])),
        }
    }
    months
}

trait Ctl {
    /// The price for batch `b` with `used` spent this month.
    fn price(&mut self, b: &B, used: u64) -> f64;
    /// After the batch spent.
    fn after(&mut self, _b: &B, _used: u64) {}
    /// The batch priced last was held: not planned after all.
    fn held(&mut self) {}
}

struct Real(cfpurge::budget::PriceController);

impl Ctl for Real {
    fn price(&mut self, b: &B, used: u64) -> f64 {
        let t = UNIX_EPOCH + Duration::from_secs(b.at);
        self.0.observe(t, &b.curve);
        self.0.advance(t, used);
        self.0.price()
    }
    fn after(&mut self, b: &B, used: u64) {
        self.0.advance(UNIX_EPOCH + Duration::from_secs(b.at), used);
    }
    fn held(&mut self) {
        self.0.forget_last();
    }
}

fn hull(curve: &[(usize, u64)]) -> Vec<(f64, f64)> {
    let mut hull: Vec<(f64, f64)> = Vec::new();
    for &(billed, blast) in curve {
        let p = (billed as f64, blast as f64);
        while hull.len() >= 2 {
            let (a, b) = (hull[hull.len() - 2], hull[hull.len() - 1]);
            if (b.1 - a.1) * (p.0 - a.0) >= (p.1 - a.1) * (b.0 - a.0) {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push(p);
    }
    hull
}

fn billed_at(hull: &[(f64, f64)], price: f64) -> f64 {
    hull.iter()
        .map(|&(billed, blast)| (price * billed + blast, billed))
        .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)))
        .map_or(0.0, |p| p.1)
}

/// Sample-average re-solve: the past `window` of batches, repeated, is the
/// future; the price is the least at which the current batch and every
/// prefix of that future fit the allowance then.
struct Saa {
    window: u64,
    recent: std::collections::VecDeque<(u64, Vec<(f64, f64)>)>,
    budget: cfpurge::config::BudgetConfig,
    floor: f64,
    ceiling: f64,
    scale: f64,
}

impl Ctl for Saa {
    fn price(&mut self, b: &B, used: u64) -> f64 {
        let now = b.at;
        while self.recent.front().is_some_and(|r| r.0 + self.window < now) {
            self.recent.pop_front();
        }
        let own = hull(&b.curve);
        let month = Month::of(UNIX_EPOCH + Duration::from_secs(now));
        let end = secs(month.end());
        // The future: each recent batch at its time + k × window.
        let mut future: Vec<(u64, u64, usize)> = Vec::new();
        if !self.recent.is_empty() {
            let mut k = 1;
            loop {
                let mut any = false;
                for (i, r) in self.recent.iter().enumerate() {
                    let at = r.0 + k * self.window;
                    if at > now && at < end {
                        let allow = cfpurge::budget::allowance(
                            &self.budget,
                            UNIX_EPOCH + Duration::from_secs(at),
                        );
                        future.push((at, allow, i));
                        any = true;
                    } else if at <= now {
                        any = true;
                    }
                }
                if !any || k > 100 {
                    break;
                }
                k += 1;
            }
        }
        future.sort();
        let hulls: Vec<&Vec<(f64, f64)>> = self.recent.iter().map(|r| &r.1).collect();
        let room_now = b.allowance.saturating_sub(used) as f64;
        let feasible = |p: f64| -> bool {
            let mut spent = billed_at(&own, p);
            if spent > room_now {
                return false;
            }
            for &(_, allow, i) in &future {
                spent += billed_at(hulls[i], p) * self.scale;
                if spent > allow as f64 - used as f64 {
                    return false;
                }
            }
            true
        };
        let price = if feasible(self.floor) {
            self.floor
        } else if !feasible(self.ceiling) {
            self.ceiling
        } else {
            let (mut lo, mut hi) = (self.floor.ln(), self.ceiling.ln());
            for _ in 0..30 {
                let mid = 0.5 * (lo + hi);
                if feasible(mid.exp()) {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            hi.exp()
        };
        self.recent.push_back((now, own));
        price
    }
}

fn run_ctl(months: &[(Month, Vec<&B>)], ctl: &mut dyn Ctl, opts: &[u64]) -> (u64, u64, u64) {
    let (mut tb, mut tbl, mut to) = (0, 0, 0);
    let mut held: Vec<B> = Vec::new();
    let mut over = 0;
    for ((m, v), opt) in months.iter().zip(opts) {
        let mut used = 0;
        let mut blast = 0;
        let mut nheld = 0;
        for b in v {
            // Held batches go first, at this batch's time.
            let mut queue: Vec<B> = std::mem::take(&mut held);
            queue.push((*b).clone());
            for mut h in queue {
                h.at = b.at;
                h.allowance = b.allowance;
                let p = ctl.price(&h, used);
                let room = b.allowance.saturating_sub(used);
                match choose(&h.curve, p, room) {
                    Some(pt) => {
                        used += pt.0 as u64;
                        blast += pt.1;
                        ctl.after(&h, used);
                    }
                    None => {
                        ctl.held();
                        nheld += 1;
                        held.push(h);
                    }
                }
            }
        }
        if used > 1_000_000 {
            over += 1;
        }
        if std::env::var("VERBOSE").is_ok() {
            println!(
                "{m} billed {used} blast {blast} opt {opt} ratio {:.2} held {nheld} at end {}",
                blast as f64 / (*opt).max(1) as f64,
                held.len()
            );
        }
        tb += used;
        tbl += blast;
        to += opt;
    }
    let _ = over;
    (tb, tbl, to)
}

fn sim(file: &str, monthly: u64, which: &[String]) {
    let bs: Vec<B> = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let months = months_of(&bs);
    let opts: Vec<u64> = months
        .iter()
        .map(|(_, v)| {
            let batches: Vec<OBatch<'_>> = v
                .iter()
                .map(|b| OBatch {
                    curve: &b.curve,
                    limit: b.allowance,
                })
                .collect();
            optimum::paced(&batches).map_or(0, |a| a.blast)
        })
        .collect();
    let config = config(monthly);
    let first = UNIX_EPOCH + Duration::from_secs(bs[0].at);
    for w in which {
        let mut parts = w.split(':');
        let kind = parts.next().unwrap();
        let args: Vec<f64> = parts.map(|x| x.parse().unwrap()).collect();
        let mut ctl: Box<dyn Ctl> = match kind {
            "cur" => Box::new(Real(cfpurge::budget::PriceController::new(
                &config.budget,
                50.0,
                None,
                Month::of(first).start(),
            ))),
            "tuned" => Box::new(Real(cfpurge::budget::PriceController::with_tuning(
                &config.budget,
                50.0,
                None,
                Month::of(first).start(),
                cfpurge::budget::Tuning {
                    step: args[0],
                    window: (args[1] * 86_400.0) as u64,
                    learn: (args.get(2).copied().unwrap_or(10.0) * 86_400.0) as u64,
                    lead_step: args.get(3).copied().unwrap_or(1.0),
                    ..cfpurge::budget::Tuning::DEFAULT
                },
            ))),
            "saa" => Box::new(Saa {
                window: (args[0] * 86_400.0) as u64,
                recent: Default::default(),
                budget: config.budget.clone(),
                floor: 0.05,
                ceiling: 50.0 * 1024.0,
                scale: args.get(1).copied().unwrap_or(1.0),
            }),
            "const" => Box::new(Const(args[0])),
            "ftl" => Box::new(Ftl {
                window: (args[0] * 86_400.0) as u64,
                every: (args.get(1).copied().unwrap_or(1.0) * 86_400.0) as u64,
                recent: Default::default(),
                monthly: monthly as f64,
                burst: 100.0,
                price: 50.0,
                last: 0,
                step: args.get(2).copied().unwrap_or(0.0),
            }),
            _ => panic!("controller {kind}"),
        };
        let (billed, blast, opt) = run_ctl(&months, ctl.as_mut(), &opts);
        println!(
            "{w}: billed {billed} blast {blast} opt {opt} ratio {:.3}",
            blast as f64 / opt as f64
        );
    }
}

struct Const(f64);

impl Ctl for Const {
    fn price(&mut self, _b: &B, _used: u64) -> f64 {
        self.0
    }
}

fn month(file: &str, which: &str) {
    let bs: Vec<B> = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let months = months_of(&bs);
    let (m, v) = months.iter().find(|(m, _)| m.to_string() == which).unwrap();
    let batches: Vec<OBatch<'_>> = v
        .iter()
        .map(|b| OBatch {
            curve: &b.curve,
            limit: b.allowance,
        })
        .collect();
    let a = optimum::paced(&batches).unwrap();
    let start = secs(m.start());
    let (mut cu, mut ou) = (0, 0);
    for (b, p) in v.iter().zip(&a.points) {
        cu += b.billed;
        ou += p.0 as u64;
        let k = b.curve.iter().position(|q| q == p).unwrap();
        let (lo, hi) = price_range(&b.curve, k);
        println!(
            "{:6.2} allow {:4} cf {:4} opt {:4} | cf p {:8.2} ({:3},{:5}) | opt ({:3},{:5}) [{:.2},{:.2}] min ({},{})",
            (b.at - start) as f64 / 86400.0,
            b.allowance,
            cu,
            ou,
            b.price,
            b.billed,
            b.blast,
            p.0,
            p.1,
            lo,
            hi,
            b.curve[0].0,
            b.curve[0].1
        );
    }
}

/// Follow the leader: the fixed price that would have purged least over the
/// last `window`, taken as a month under the pacing allowance.
struct Ftl {
    window: u64,
    every: u64,
    recent: std::collections::VecDeque<(u64, Vec<(f64, f64)>)>,
    monthly: f64,
    burst: f64,
    price: f64,
    last: u64,
    step: f64,
}

impl Ctl for Ftl {
    fn held(&mut self) {
        self.recent.pop_back();
    }
    fn price(&mut self, b: &B, used: u64) -> f64 {
        let now = b.at;
        let month = Month::of(UNIX_EPOCH + Duration::from_secs(now));
        let share = month.elapsed_fraction(UNIX_EPOCH + Duration::from_secs(now));
        let lead = (used as f64 - self.monthly * share) / self.monthly;
        let base = self.base(b, now);
        (base.ln() + self.step * lead).exp().clamp(0.05, 51200.0)
    }
}

impl Ftl {
    fn base(&mut self, b: &B, now: u64) -> f64 {
        self.recent.push_back((now, hull(&b.curve)));
        while self.recent.front().is_some_and(|r| r.0 + self.window < now) {
            self.recent.pop_front();
        }
        if now >= self.last + self.every {
            self.last = now;
            let from = now.saturating_sub(self.window);
            let w = self.window as f64;
            let mut best = (f64::INFINITY, self.price);
            let mut p: f64 = 0.05;
            while p < 2000.0 {
                let mut used = 0.0;
                let mut blast = 0.0;
                for (at, h) in &self.recent {
                    let s = (*at - from) as f64;
                    let allow = (self.monthly * s / w).floor() + self.burst;
                    let allow = allow.min(self.monthly);
                    let room = allow - used;
                    let pick = h
                        .iter()
                        .filter(|q| q.0 <= room)
                        .min_by(|x, y| (p * x.0 + x.1).total_cmp(&(p * y.0 + y.1)).then(x.0.total_cmp(&y.0)))
                        .copied()
                        .unwrap_or(h[0]);
                    used += pick.0;
                    blast += pick.1;
                }
                if blast < best.0 {
                    best = (blast, p);
                }
                p *= 1.1;
            }
            self.price = best.1;
        }
        self.price
    }
}
