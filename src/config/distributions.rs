//! `[distributions.ALIAS]`: the CloudFront distributions (and distribution
//! tenants) purged, the names a request may give them, and their checks.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{CatalogSource, Config, Validator, VerifyConfig, WarmConfig, edge};
use crate::path::{MAX_INFLIGHT_EXACT, MAX_INFLIGHT_WILDCARDS};

/// `[distributions.ALIAS]`: one CloudFront distribution. The alias names it
/// in requests, metrics labels and logs.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistributionConfig {
    /// The CloudFront distribution id (`E2ABCDEF123456`); required. With
    /// `tenant_id`, the multi-tenant distribution the tenant belongs to.
    pub id: String,
    /// A distribution tenant (`dt_...`) of the multi-tenant distribution
    /// `id`: this entry is invalidated through the tenant's own calls
    /// (CreateInvalidationForDistributionTenant and its Get/List), with its
    /// own in-flight limits and pending set, and is named in requests by its
    /// alias or this id, never by `id`, which several entries share.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Exact paths this daemon may keep in progress (AWS allows 3,000 per
    /// distribution, counting other tools'); lower it to leave room for them.
    pub max_inflight_paths: usize,
    /// Wildcard paths this daemon may keep in progress (AWS allows 15, counted
    /// apart from exact paths); lower it to leave room for others.
    pub max_inflight_wildcards: usize,
    /// What the site serves, for the least-blast planner to price a
    /// wildcard by what it purges beyond the request.
    pub catalog: CatalogSource,
    /// With `catalog = "file"`: one served path per line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog_file: Option<PathBuf>,
    /// Whether the distribution has a CacheTagConfig, so that requests may
    /// purge by cache tag. Without it CloudFront accepts tag items and
    /// purges nothing, so requests with tags are rejected instead.
    pub cache_tags: bool,
    /// Checking at the edge that a completed purge took (off when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyConfig>,
    /// Refilling the cache after a completed purge (off when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warm: Option<WarmConfig>,
    /// The `[accounts.NAME]` this distribution lives in (unset: the default
    /// credentials' account), whose budget and create rate it shares.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

impl DistributionConfig {
    /// The id a request may name this entry by, besides its alias: its
    /// `tenant_id` for a tenant, else its distribution id.
    pub fn routing_id(&self) -> &str {
        self.tenant_id.as_deref().unwrap_or(&self.id)
    }
}

impl Default for DistributionConfig {
    /// The id has no default: an empty one is reported as missing.
    fn default() -> Self {
        DistributionConfig {
            id: String::new(),
            tenant_id: None,
            max_inflight_paths: MAX_INFLIGHT_EXACT,
            max_inflight_wildcards: MAX_INFLIGHT_WILDCARDS,
            catalog: CatalogSource::None,
            catalog_file: None,
            cache_tags: false,
            verify: None,
            warm: None,
            account: None,
        }
    }
}

impl Config {
    /// The distribution a request names: by alias, else by id (a tenant
    /// entry by its `tenant_id`, never by its distribution's id, which
    /// several entries share).
    pub fn distribution(&self, name: &str) -> Option<(&str, &DistributionConfig)> {
        self.distributions
            .get_key_value(name)
            .or_else(|| {
                self.distributions
                    .iter()
                    .find(|(_, d)| d.routing_id() == name)
            })
            .map(|(alias, d)| (alias.as_str(), d))
    }

    /// The distribution for requests that name none, if there is one.
    pub fn default_distribution(&self) -> Option<(&str, &DistributionConfig)> {
        let alias = self.routing.default_distribution.as_deref()?;
        self.distributions
            .get_key_value(alias)
            .map(|(alias, d)| (alias.as_str(), d))
    }

    pub(super) fn check_distributions(&self, v: &mut Validator) {
        if self.distributions.is_empty() {
            v.push(
                "distributions",
                "must configure at least one distribution, e.g. [distributions.www] id = \"E2ABCDEF123456\"",
            );
        }
        let mut ids: BTreeMap<&str, &str> = BTreeMap::new();
        let mut tenants: BTreeMap<&str, &str> = BTreeMap::new();
        for (alias, d) in &self.distributions {
            let key = format!("distributions.{alias}");
            if !valid_alias(alias) {
                v.push(
                    &key,
                    "has an invalid alias: use 1 to 64 of a-z, 0-9, _ and - without \"__\" \
                     (aliases are lowercase because environment overrides \
                     CFPURGE__DISTRIBUTIONS__ALIAS__KEY reach only lowercase keys)",
                );
            }
            let id_key = format!("{key}.id");
            if d.id.is_empty() {
                v.push(
                    &id_key,
                    "is required (the CloudFront distribution id, e.g. \"E2ABCDEF123456\")",
                );
            } else if !valid_distribution_id(&d.id) {
                v.push(
                    &id_key,
                    format!(
                        "{:?} is not a CloudFront distribution id (upper-case letters and digits, e.g. \"E2ABCDEF123456\")",
                        d.id
                    ),
                );
            } else if d.tenant_id.is_none()
                && let Some(other) = ids.insert(&d.id, alias)
            {
                // Tenant entries share their distribution's id: each has
                // its own tenant, limits and invalidations.
                v.push(
                    &id_key,
                    format!(
                        "{:?} is also the id of distributions.{other}: one distribution may have only one alias, \
                         or its in-flight limits would be counted twice",
                        d.id
                    ),
                );
            }
            if let Some(tenant) = &d.tenant_id {
                let tenant_key = format!("{key}.tenant_id");
                if !valid_tenant_id(tenant) {
                    v.push(
                        &tenant_key,
                        format!(
                            "{tenant:?} is not a CloudFront distribution tenant id (\"dt_\" and letters and digits, \
                             e.g. \"dt_2AbCdEfGh\")"
                        ),
                    );
                } else if let Some(other) = tenants.insert(tenant, alias) {
                    v.push(
                        &tenant_key,
                        format!(
                            "{tenant:?} is also the tenant_id of distributions.{other}: one tenant may have only one alias, \
                             or its in-flight limits would be counted twice"
                        ),
                    );
                }
            }
            v.range(
                &format!("{key}.max_inflight_paths"),
                d.max_inflight_paths as u64,
                1,
                MAX_INFLIGHT_EXACT as u64,
            );
            v.range(
                &format!("{key}.max_inflight_wildcards"),
                d.max_inflight_wildcards as u64,
                1,
                MAX_INFLIGHT_WILDCARDS as u64,
            );
            self.check_catalog(v, &key, alias, d);
            let token = self.http.enqueue_token.as_ref();
            for (key, message) in edge::problems(alias, d.verify.as_ref(), d.warm.as_ref(), token) {
                v.push(&key, message);
            }
        }
        self.check_names(v);
    }

    /// A request names an entry by its alias, its `tenant_id`, or (for an
    /// ordinary distribution) its `id`; a multi-tenant distribution's `id`
    /// is answered with the tenants to name instead. A name that is one
    /// entry's alias and another entry's id or tenant id would mean two
    /// targets, and routing would pick one silently (the alias): refused,
    /// naming both. (Ids shared by two entries are checked above.)
    pub(super) fn check_names(&self, v: &mut Validator) {
        for (alias, d) in &self.distributions {
            let names = [("id", Some(&d.id)), ("tenant_id", d.tenant_id.as_ref())];
            for (field, name) in names {
                let Some(name) = name else { continue };
                if name == alias || !self.distributions.contains_key(name) {
                    continue;
                }
                v.push(
                    &format!("distributions.{alias}.{field}"),
                    format!(
                        "{name:?} is also the alias of distributions.{name}: a request naming \
                         {name:?} could mean either entry; rename one of them"
                    ),
                );
            }
        }
    }
}

/// `[a-z0-9_-]{1,64}` without `__`, which would split the environment
/// variable's name at the wrong place.
pub(super) fn valid_alias(alias: &str) -> bool {
    (1..=64).contains(&alias.len())
        && !alias.contains("__")
        && alias
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Distribution tenant ids are `dt_` and letters and digits
/// (`dt_2wjDZi3hD1ivOXf6rpZJO1AB`).
fn valid_tenant_id(id: &str) -> bool {
    id.strip_prefix("dt_").is_some_and(|rest| {
        (1..=128).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// CloudFront ids are upper-case letters and digits (`E2ABCDEF123456`).
fn valid_distribution_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceKind;
    use crate::config::tests::{keys, minimal};

    #[test]
    fn no_distribution_is_a_problem() {
        let mut cfg = minimal();
        cfg.distributions.clear();
        cfg.routing.default_distribution = None;
        assert_eq!(keys(&cfg), ["distributions"]);
    }

    #[test]
    fn several_distributions_leave_the_default_unset() {
        let mut cfg = Config::default();
        cfg.source.kind = SourceKind::Local;
        for (alias, id) in [("www", "EAAA"), ("api", "EBBB")] {
            cfg.distributions.insert(
                alias.into(),
                DistributionConfig {
                    id: id.into(),
                    ..DistributionConfig::default()
                },
            );
        }
        cfg.resolve();
        assert_eq!(cfg.routing.default_distribution, None);
        assert_eq!(cfg.problems(), vec![]);
        assert_eq!(cfg.distribution("EBBB").map(|(a, _)| a), Some("api"));
        assert_eq!(
            cfg.distribution("api").map(|(_, d)| d.id.as_str()),
            Some("EBBB")
        );
        assert!(cfg.distribution("nope").is_none());
    }

    #[test]
    fn aliases_must_be_lowercase() {
        for (alias, ok) in [
            ("www", true),
            ("www-eu_2", true),
            ("WWW", false),
            ("a__b", false),
            ("a.b", false),
            ("", false),
        ] {
            assert_eq!(valid_alias(alias), ok, "{alias:?}");
        }
    }

    #[test]
    fn distribution_ids_look_like_cloudfront_ids() {
        for (id, ok) in [
            ("E2ABCDEF123456", true),
            ("e2abcdef123456", false),
            ("E2-ABC", false),
            ("", false),
        ] {
            assert_eq!(valid_distribution_id(id), ok, "{id:?}");
        }
    }

    #[test]
    fn duplicate_ids_are_a_problem() {
        let mut cfg = minimal();
        cfg.distributions.insert(
            "www2".into(),
            DistributionConfig {
                id: "E2ABCDEF123456".into(),
                ..DistributionConfig::default()
            },
        );
        let problems = cfg.problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "distributions.www2.id");
        assert!(
            problems[0].message.contains("distributions.www"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn tenant_entries_share_their_distributions_id() {
        let mut cfg = minimal();
        let tenant = |tenant: &str| DistributionConfig {
            id: "E3MULTITENANT".into(),
            tenant_id: Some(tenant.into()),
            ..DistributionConfig::default()
        };
        cfg.distributions
            .insert("shop-a".into(), tenant("dt_2AaAa"));
        cfg.distributions
            .insert("shop-b".into(), tenant("dt_2BbBb"));
        // An ordinary entry may name the multi-tenant distribution too.
        cfg.distributions.insert(
            "all-shops".into(),
            DistributionConfig {
                id: "E3MULTITENANT".into(),
                ..DistributionConfig::default()
            },
        );
        assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
        // A tenant entry is named by its alias or tenant id; the shared id
        // names the ordinary entry, never a tenant.
        assert_eq!(cfg.distribution("dt_2BbBb").map(|(a, _)| a), Some("shop-b"));
        assert_eq!(cfg.distribution("shop-a").map(|(a, _)| a), Some("shop-a"));
        assert_eq!(
            cfg.distribution("E3MULTITENANT").map(|(a, _)| a),
            Some("all-shops")
        );
        cfg.distributions.remove("all-shops");
        assert_eq!(cfg.distribution("E3MULTITENANT").map(|(a, _)| a), None);

        // Two entries for one tenant, and ids that are no tenant ids.
        cfg.distributions
            .insert("shop-a2".into(), tenant("dt_2AaAa"));
        cfg.distributions
            .insert("bad1".into(), tenant("E2ABCDEF123456"));
        cfg.distributions.insert("bad2".into(), tenant("dt_"));
        cfg.distributions.insert("bad3".into(), tenant("dt_a-b"));
        let problems: Vec<String> = cfg.problems().iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(
            problems[0].starts_with("distributions.bad1.tenant_id \"E2ABCDEF123456\" is not a CloudFront distribution tenant id"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("distributions.bad2.tenant_id"),
            "{problems:?}"
        );
        assert!(
            problems[2].starts_with("distributions.bad3.tenant_id"),
            "{problems:?}"
        );
        assert!(
            problems[3].starts_with(
                "distributions.shop-a2.tenant_id \"dt_2AaAa\" is also the tenant_id of distributions.shop-a"
            ),
            "{problems:?}"
        );
    }

    #[test]
    fn a_name_may_mean_one_entry_only() {
        let entry = |id: &str, tenant: Option<&str>| DistributionConfig {
            id: id.into(),
            tenant_id: tenant.map(Into::into),
            ..DistributionConfig::default()
        };
        let mut cfg = minimal();
        cfg.distributions
            .insert("dt_1a".into(), entry("E5ORDINARY", None));
        cfg.distributions
            .insert("shop".into(), entry("E3MULTI", Some("dt_1a")));
        // An alias equal to another entry's id (ids of digits only are
        // valid aliases), and to a multi-tenant distribution's id.
        cfg.distributions
            .insert("123".into(), entry("E6OTHER", None));
        cfg.distributions
            .insert("456".into(), entry("E7OTHER", None));
        cfg.distributions.insert("plain".into(), entry("123", None));
        cfg.distributions
            .insert("tenant".into(), entry("456", Some("dt_2Bb")));
        // An entry whose alias is its own id means one entry.
        cfg.distributions.insert("789".into(), entry("789", None));
        let problems: Vec<String> = cfg.problems().iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "distributions.plain.id \"123\" is also the alias of distributions.123: \
                 a request naming \"123\" could mean either entry; rename one of them",
                "distributions.shop.tenant_id \"dt_1a\" is also the alias of distributions.dt_1a: \
                 a request naming \"dt_1a\" could mean either entry; rename one of them",
                "distributions.tenant.id \"456\" is also the alias of distributions.456: \
                 a request naming \"456\" could mean either entry; rename one of them",
            ]
        );
    }
}
