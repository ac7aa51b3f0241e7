//! The offline optimum of a month under a budget: the least blast the
//! month's batches could have had, given each batch's exact least-blast
//! curve ([`super::least_blast::frontier`]: the least blast at every number
//! of billed paths). It is the yardstick the budget's price is measured
//! against, known only once the month is over. Pure: curves and limits in,
//! the allocation out.
//!
//! Two forms:
//!
//! - [`at_spend`]: the least total blast with at most `spend` billed paths
//!   in all (a multiple-choice knapsack: one point of each batch's curve);
//! - [`paced`]: the least total blast with the paths billed up to and
//!   including each batch at most the allowance at that batch's time (the
//!   even pacing's `monthly_paths × elapsed / length + burst_paths`, capped
//!   at the month's budget), so the month's budget too.
//!
//! Both are one exact dynamic programme over the batches in time order, on
//! the cumulative spend: after batch `i`, the least blast for every total
//! spend up to batch `i`'s limit. [`at_spend`] is the same programme with
//! every limit equal to `spend` (a prefix of a sum of non-negative counts
//! never exceeds the sum). Exact for the curves given, whatever their shape:
//! no convexity is assumed (a batch's curve is often not convex, so a single
//! price, a Lagrangian, would miss spends between its breakpoints). The time
//! and memory grow with the batches × the largest limit × the points of a
//! curve: a month of a few thousand paths and a few hundred batches is a
//! few tens of millions of steps.
//!
//! Each batch is covered in full when it arrives: the optimum does not
//! defer entries to a later batch (which could merge them with later
//! requests), so it is the best plan of the same batches, not of every
//! schedule.

/// One batch as the optimum sees it.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    /// The least blast at each billed count, `(billed, blast)` with billed
    /// rising and blast falling, as [`super::least_blast::frontier`] gives
    /// it. A billed count between two points has the blast of the lower
    /// one (spending a path more never has to purge more). Empty when no
    /// cover of the batch fits.
    pub curve: &'a [(usize, u64)],
    /// The most paths that may have been billed in all, this batch
    /// included, by the time it is planned.
    pub limit: u64,
}

/// The optimum's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// The least total blast.
    pub blast: u64,
    /// Paths it bills in all (the least among allocations with that blast).
    pub billed: u64,
    /// For each batch, in order, the point of its curve taken.
    pub points: Vec<(usize, u64)>,
}

/// The least total blast of `curves` billing at most `spend` in all;
/// `None` when not even the cheapest cover of every batch fits `spend`
/// (or a curve is empty).
pub fn at_spend(curves: &[&[(usize, u64)]], spend: u64) -> Option<Allocation> {
    let batches: Vec<Batch<'_>> = curves
        .iter()
        .map(|&curve| Batch {
            curve,
            limit: spend,
        })
        .collect();
    paced(&batches)
}

/// The least total blast of `batches` (in time order) with the paths billed
/// up to each batch at most its limit; `None` when no allocation meets
/// every limit.
pub fn paced(batches: &[Batch<'_>]) -> Option<Allocation> {
    const INF: u64 = u64::MAX;
    // No state beyond what some later limit still admits, nor beyond what
    // every batch's dearest point can bill.
    let most: u64 = batches
        .iter()
        .map(|b| b.curve.last().map_or(0, |p| p.0 as u64))
        .fold(0, u64::saturating_add);
    let top = batches.iter().map(|b| b.limit).max().unwrap_or(0).min(most);
    let width = usize::try_from(top).ok()?.checked_add(1)?;
    // best[s]: least blast with exactly `s` billed so far.
    let mut best = vec![INF; width];
    best[0] = 0;
    let mut next = vec![INF; width];
    // choice[i][s]: the point of batch i taken to reach `s` after it.
    let mut choice: Vec<Vec<u32>> = Vec::with_capacity(batches.len());
    // The highest reachable spend so far, to skip the empty tail.
    let mut reach = 0usize;
    for batch in batches {
        let limit = usize::try_from(batch.limit.min(top)).unwrap_or(width - 1);
        next.fill(INF);
        let mut chosen = vec![u32::MAX; width];
        let mut new_reach = 0;
        for (s, &before) in best.iter().enumerate().take(reach.min(limit) + 1) {
            if before == INF {
                continue;
            }
            for (k, &(billed, blast)) in batch.curve.iter().enumerate() {
                let t = s + billed;
                if t > limit {
                    // Billed counts rise along the curve.
                    break;
                }
                let total = before.saturating_add(blast);
                if total < next[t] {
                    next[t] = total;
                    chosen[t] = k as u32;
                    new_reach = new_reach.max(t);
                }
            }
        }
        std::mem::swap(&mut best, &mut next);
        choice.push(chosen);
        reach = new_reach;
        if best[..=reach].iter().all(|&b| b == INF) {
            return None;
        }
    }
    // The least blast, and the least spend that reaches it.
    let (billed, blast) = best[..=reach]
        .iter()
        .enumerate()
        .filter(|(_, b)| **b != INF)
        .min_by_key(|&(s, &b)| (b, s))
        .map(|(s, &b)| (s, b))?;
    let mut points = vec![(0, 0); batches.len()];
    let mut s = billed;
    for i in (0..batches.len()).rev() {
        let k = choice[i][s];
        debug_assert_ne!(k, u32::MAX, "a reachable spend has a choice");
        let point = batches[i].curve[k as usize];
        points[i] = point;
        s -= point.0;
    }
    Some(Allocation {
        blast,
        billed: billed as u64,
        points,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Every combination of one point per batch, checked against the
    /// limits: the least blast, or `None`.
    fn brute_force(batches: &[Batch<'_>]) -> Option<u64> {
        fn go(batches: &[Batch<'_>], i: usize, spent: u64, blast: u64) -> Option<u64> {
            let Some(batch) = batches.get(i) else {
                return Some(blast);
            };
            batch
                .curve
                .iter()
                .filter(|p| spent + p.0 as u64 <= batch.limit)
                .filter_map(|p| go(batches, i + 1, spent + p.0 as u64, blast + p.1))
                .min()
        }
        go(batches, 0, 0, 0)
    }

    /// A curve as `frontier` gives one: billed rising, blast falling.
    fn curve() -> impl Strategy<Value = Vec<(usize, u64)>> {
        (
            0usize..4,
            proptest::collection::vec((1usize..5, 1u64..40), 0..5),
        )
            .prop_map(|(start, steps)| {
                let total: u64 = steps.iter().map(|s| s.1).sum();
                let mut points = vec![(start, total)];
                let (mut billed, mut blast) = (start, total);
                for (more, less) in steps {
                    billed += more;
                    blast -= less;
                    points.push((billed, blast));
                }
                points
            })
    }

    #[test]
    fn a_convex_miss_is_found() {
        // A Lagrangian price sees only 0/100 and 10/0 for the second batch
        // (the straight line from 100 to 0 passes under (5, 90)); with 6
        // paths the best is the first batch's 1/0 and the second's 5/90,
        // which no single price picks.
        let a: &[(usize, u64)] = &[(0, 50), (1, 0)];
        let b: &[(usize, u64)] = &[(0, 100), (5, 90), (10, 0)];
        let out = at_spend(&[a, b], 6).unwrap();
        assert_eq!(out.blast, 90);
        assert_eq!(out.points, [(1, 0), (5, 90)]);
        assert_eq!(out.billed, 6);
    }

    #[test]
    fn the_pacing_limits_what_early_batches_spend() {
        let early: &[(usize, u64)] = &[(0, 100), (10, 0)];
        let late: &[(usize, u64)] = &[(0, 10), (10, 0)];
        // Free to choose, the 10 paths go to the early batch.
        assert_eq!(at_spend(&[early, late], 10).unwrap().blast, 10);
        // Paced at 5 by the first batch, it cannot have them.
        let paced_out = paced(&[
            Batch {
                curve: early,
                limit: 5,
            },
            Batch {
                curve: late,
                limit: 10,
            },
        ])
        .unwrap();
        assert_eq!(paced_out.blast, 100);
        assert_eq!(paced_out.points, [(0, 100), (10, 0)]);
    }

    #[test]
    fn nothing_fits_is_none() {
        let a: &[(usize, u64)] = &[(3, 0)];
        assert_eq!(at_spend(&[a], 2), None);
        assert_eq!(at_spend(&[&[]], 100), None);
        assert_eq!(at_spend(&[], 0).unwrap().blast, 0);
    }

    proptest! {
        #[test]
        fn the_programme_matches_brute_force(
            batches in proptest::collection::vec((curve(), 0u64..30), 0..5),
        ) {
            let given: Vec<Batch<'_>> = batches
                .iter()
                .map(|(curve, limit)| Batch { curve, limit: *limit })
                .collect();
            let out = paced(&given);
            prop_assert_eq!(out.as_ref().map(|a| a.blast), brute_force(&given));
            if let Some(a) = out {
                // The allocation is the curves' points, within every limit,
                // and adds up to what it says.
                let mut spent = 0;
                for (b, p) in given.iter().zip(&a.points) {
                    prop_assert!(b.curve.contains(p));
                    spent += p.0 as u64;
                    prop_assert!(spent <= b.limit);
                }
                prop_assert_eq!(spent, a.billed);
                prop_assert_eq!(a.points.iter().map(|p| p.1).sum::<u64>(), a.blast);
            }
        }

        #[test]
        fn at_spend_is_paced_with_one_limit(
            curves in proptest::collection::vec(curve(), 0..5),
            spend in 0u64..40,
        ) {
            let refs: Vec<&[(usize, u64)]> = curves.iter().map(Vec::as_slice).collect();
            let given: Vec<Batch<'_>> = refs
                .iter()
                .map(|&curve| Batch { curve, limit: spend })
                .collect();
            prop_assert_eq!(
                at_spend(&refs, spend).map(|a| a.blast),
                brute_force(&given)
            );
        }
    }
}
