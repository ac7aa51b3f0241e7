//! The CallerReference of a batch: how CloudFront tells a retry of a batch
//! (same reference, same paths: the existing invalidation comes back and
//! nothing is billed twice) from a new one, and how cfpurge tells its own
//! invalidations from other tools'.

use crate::path::CfPath;

/// What every CallerReference cfpurge makes starts with; invalidations
/// without it were made by other tools.
pub const REFERENCE_PREFIX: &str = "cfpurge-";

/// The CallerReference of one batch: stable across retries of that batch
/// (the same arguments give the same reference, so a retry after an unknown
/// outcome finds the invalidation already made instead of making another)
/// and unique across batches (`run` names the process: its start time in
/// milliseconds, `batch` counts batches within the process, and the paths'
/// fingerprint guards against reusing a reference for other paths).
pub fn caller_reference(distribution: &str, run: &str, batch: u64, paths: &[CfPath]) -> String {
    format!(
        "{REFERENCE_PREFIX}{distribution}-{run}-{batch}-{:016x}",
        fingerprint(paths)
    )
}

/// [`caller_reference`] of a replica: `cfpurge-<owner>-...`, so that an
/// invalidation names the replica that created it.
pub fn caller_reference_of(
    owner: Option<&str>,
    distribution: &str,
    run: &str,
    batch: u64,
    paths: &[CfPath],
) -> String {
    let reference = caller_reference(distribution, run, batch, paths);
    match owner {
        Some(owner) => format!(
            "{REFERENCE_PREFIX}{owner}-{}",
            &reference[REFERENCE_PREFIX.len()..]
        ),
        None => reference,
    }
}

/// FNV-1a over the sorted paths: order-free, stable across builds and
/// platforms (unlike `std`'s hasher, whose output may change).
fn fingerprint(paths: &[CfPath]) -> u64 {
    let mut sorted: Vec<&str> = paths.iter().map(CfPath::as_str).collect();
    sorted.sort_unstable();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in sorted {
        for b in p.bytes().chain(std::iter::once(b'\n')) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(v: &[&str]) -> Vec<CfPath> {
        v.iter().map(|s| CfPath::parse(s).unwrap()).collect()
    }

    #[test]
    fn a_reference_is_stable_for_a_batch_and_unique_across_batches() {
        let a = paths(&["/a", "/b/*"]);
        let r = caller_reference("www", "1700000000000", 7, &a);
        assert!(r.starts_with("cfpurge-www-1700000000000-7-"));
        assert_eq!(
            r,
            caller_reference("www", "1700000000000", 7, &paths(&["/b/*", "/a"]))
        );
        assert_ne!(r, caller_reference("www", "1700000000000", 8, &a));
        assert_ne!(r, caller_reference("www", "1700000000001", 7, &a));
        assert_ne!(r, caller_reference("img", "1700000000000", 7, &a));
        assert_ne!(
            r,
            caller_reference("www", "1700000000000", 7, &paths(&["/a"]))
        );
        let owned = caller_reference_of(Some("pod-a"), "www", "f7", 7, &a);
        assert!(owned.starts_with("cfpurge-pod-a-www-f7-7-"), "{owned}");
        assert_eq!(caller_reference_of(None, "www", "1700000000000", 7, &a), r);
        // Path boundaries count: ["/a", "/b"] is not ["/a/b"].
        assert_ne!(
            fingerprint(&paths(&["/a", "/b"])),
            fingerprint(&paths(&["/a/b"]))
        );
    }
}
