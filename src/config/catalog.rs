//! `[catalog]` and each distribution's `catalog`: what the site serves, for
//! the least-blast planner, and the memory the catalogs may take.

use serde::{Deserialize, Serialize};

use super::{Config, DistributionConfig, MIB, Validator};

/// `[catalog]`: how catalogs are kept current.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    /// How often an `s3` catalog is listed again in full; S3 events keep it
    /// current in between, the full listing catches what they missed.
    pub refresh_seconds: u64,
    /// Memory one distribution's catalog may take (its table, and for
    /// `learned` its paths too): a catalog source holding more is refused
    /// whole, a learned catalog forgets its oldest paths.
    pub max_bytes: u64,
    /// Memory all catalogs together may take: a configuration whose
    /// catalogs could take more (their number × `max_bytes`) is refused.
    pub max_total_bytes: u64,
}

/// `catalog.max_bytes` when the configuration does not say: 2.98 million
/// strings of 45 bytes (`crate::catalog::STRING_BYTES`), room for the
/// 1,000,000-path site of the benchmarks (1.8 million strings) with half as
/// much again to spare.
pub const DEFAULT_CATALOG_BYTES: u64 = 128 << 20;

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            refresh_seconds: 3600,
            max_bytes: DEFAULT_CATALOG_BYTES,
            max_total_bytes: 2048 * MIB,
        }
    }
}

choice! {
    /// `distributions.NAME.catalog`
    pub enum CatalogSource ("a catalog source") {
        /// No catalog: the threshold planner.
        None = "none",
        /// The buckets routed to the distribution by `[[routing.s3]]`.
        S3 = "s3",
        /// `catalog_file`, one served path per line.
        File = "file",
        /// Every path requested so far.
        Learned = "learned",
    }
}

/// Most `catalog.max_bytes` and `catalog.max_total_bytes` (1 TiB), as for
/// `source.max_pending_bytes`.
const MAX_CATALOG_BYTES: u64 = 1 << 40;

impl Config {
    pub(super) fn check_catalog(
        &self,
        v: &mut Validator,
        key: &str,
        alias: &str,
        d: &DistributionConfig,
    ) {
        let file_key = format!("{key}.catalog_file");
        match (d.catalog, &d.catalog_file) {
            (CatalogSource::File, None) => v.push(
                &file_key,
                "is required with catalog = \"file\" (one served path per line)",
            ),
            (CatalogSource::File, Some(f)) if f.as_os_str().is_empty() => {
                v.push(&file_key, "must not be empty")
            }
            (other, Some(_)) if other != CatalogSource::File => v.push(
                &file_key,
                format!(
                    "is only read with catalog = \"file\" (catalog is \"{}\")",
                    other.as_str()
                ),
            ),
            _ => {}
        }
        if d.catalog == CatalogSource::S3
            && !self.routing.s3.iter().any(|r| r.distribution == alias)
        {
            v.push(
                &format!("{key}.catalog"),
                format!(
                    "is \"s3\" but no [[routing.s3]] route has distribution = {alias:?}: \
                     there is no bucket to list"
                ),
            );
        }
    }

    /// Each catalog may take `catalog.max_bytes`, so the catalogs together
    /// may take that many times their number: refused when that passes
    /// `catalog.max_total_bytes`, so what is configured always fits.
    pub(super) fn check_catalog_memory(&self, v: &mut Validator) {
        let c = &self.catalog;
        v.range("catalog.max_bytes", c.max_bytes, MIB, MAX_CATALOG_BYTES);
        v.range(
            "catalog.max_total_bytes",
            c.max_total_bytes,
            MIB,
            MAX_CATALOG_BYTES,
        );
        let catalogs = self
            .distributions
            .values()
            .filter(|d| d.catalog != CatalogSource::None)
            .count() as u64;
        let all = catalogs.saturating_mul(c.max_bytes);
        if c.max_bytes <= MAX_CATALOG_BYTES && all > c.max_total_bytes {
            v.push(
                "catalog.max_total_bytes",
                format!(
                    "{catalogs} distributions have a catalog, each may take catalog.max_bytes \
                     ({} MiB): {} MiB in all, more than the {} MiB allowed; raise \
                     catalog.max_total_bytes, lower catalog.max_bytes or give fewer \
                     distributions a catalog",
                    c.max_bytes / MIB,
                    all / MIB,
                    c.max_total_bytes / MIB
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::minimal;
    use crate::config::{DistributionConfig, Problem};

    #[test]
    fn catalogs_that_could_take_more_than_their_total_are_refused() {
        let mut cfg = minimal();
        for i in 0..3000 {
            cfg.distributions.insert(
                format!("t{i}"),
                DistributionConfig {
                    id: "E2ABCDEF123456".into(),
                    tenant_id: Some(format!("dt_{i}")),
                    catalog: CatalogSource::Learned,
                    ..DistributionConfig::default()
                },
            );
        }
        let problems: Vec<Problem> = cfg
            .problems()
            .into_iter()
            .filter(|p| p.key.starts_with("catalog."))
            .collect();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "catalog.max_total_bytes");
        assert_eq!(
            problems[0].message,
            "3000 distributions have a catalog, each may take catalog.max_bytes (128 MiB): \
             384000 MiB in all, more than the 2048 MiB allowed; raise catalog.max_total_bytes, \
             lower catalog.max_bytes or give fewer distributions a catalog"
        );
        // 1 MiB each, 3 GiB in all: fits. Less than 1 MiB each is refused
        // (a catalog that small holds some 23,000 strings).
        cfg.catalog.max_bytes = MIB;
        cfg.catalog.max_total_bytes = 3 * 1024 * MIB;
        assert!(
            cfg.problems()
                .iter()
                .all(|p| !p.key.starts_with("catalog."))
        );
        cfg.catalog.max_bytes = MIB / 2;
        assert!(cfg.problems().iter().any(|p| p.key == "catalog.max_bytes"));
    }
}
