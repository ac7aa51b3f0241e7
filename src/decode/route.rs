//! Routing: which distribution a request goes to, which CloudFront paths
//! an S3 object key stands for, which distributions take cache tags, and
//! which paths never need purging (`routing.skip`). Built once from the
//! configuration so that decoding a message looks nothing up in it.

use std::collections::{HashMap, HashSet};

use crate::config::{Config, S3Route};
use crate::path::CfPath;

use super::rejection::{PathSource, Rejection, Snippet};
use super::{MAX_PATHS_PER_MESSAGE, PurgeRequest};

/// Routing built once from the configuration.
#[derive(Clone, Debug)]
pub struct Router {
    /// Every configured alias and id, to the alias.
    names: HashMap<String, String>,
    /// Ids that only tenant entries have (multi-tenant distributions), to
    /// a few of those entries' aliases: named in a request, they get a
    /// rejection that says what to name instead.
    multi_tenant: HashMap<String, String>,
    /// Alias for requests that name no distribution.
    default: Option<String>,
    /// `[[routing.s3]]` by bucket, in the order of the file.
    buckets: HashMap<String, Vec<Route>>,
    /// Aliases of the distributions with `cache_tags = true`.
    tags_enabled: HashSet<String>,
    /// `routing.skip`, compiled once; `None` without patterns.
    skip: Option<regex::RegexSet>,
}

/// One `[[routing.s3]]` entry.
#[derive(Clone, Debug)]
struct Route {
    /// The alias; `Err` with the configured name when it names no
    /// distribution (only possible with a configuration that was not
    /// validated), so that its events are rejected rather than sent nowhere.
    distribution: Result<String, String>,
    mapping: KeyMapping,
}

/// How one `[[routing.s3]]` entry turns an S3 object key into CloudFront
/// paths. The one place that says it: S3 events go through it, and so does
/// the listing that builds a distribution's catalog, so that the catalog
/// holds exactly the paths the events would purge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyMapping {
    key_prefix: String,
    path_prefix: String,
    /// `None` also for an empty `index_document`.
    index_document: Option<String>,
}

impl KeyMapping {
    pub fn new(route: &S3Route) -> KeyMapping {
        KeyMapping {
            key_prefix: route.key_prefix.clone(),
            path_prefix: route.path_prefix.clone(),
            index_document: route.index_document.clone().filter(|i| !i.is_empty()),
        }
    }

    /// The prefix a key must start with to be mapped (what a listing asks
    /// S3 for).
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// The paths `key` (the literal name, already decoded) stands for, not
    /// yet validated or encoded (see [`CfPath::literal`]): the key itself
    /// under `path_prefix`, and for an index document its directory with and
    /// without the trailing `/`. `None` when the key is outside
    /// `key_prefix`.
    pub fn paths(&self, key: &str) -> Option<impl Iterator<Item = String> + use<>> {
        let rest = key.strip_prefix(self.key_prefix.as_str())?;
        let own = join(&self.path_prefix, rest);
        // CloudFront caches `/dir/`, `/dir` and `/dir/index.html` as three
        // objects.
        let (dir, bare) = match self.index_directory(rest) {
            Some(dir) => {
                let dir = join(&self.path_prefix, dir);
                let bare = dir
                    .strip_suffix('/')
                    .filter(|b| !b.is_empty())
                    .map(str::to_owned);
                (Some(dir), bare)
            }
            None => (None, None),
        };
        Some(std::iter::once(own).chain(dir).chain(bare))
    }

    /// The directory part of `rest` (empty for the top) when `rest` names
    /// the route's index document.
    fn index_directory<'k>(&self, rest: &'k str) -> Option<&'k str> {
        let index = self.index_document.as_deref()?;
        let dir = rest.strip_suffix(index)?;
        (dir.is_empty() || dir.ends_with('/')).then_some(dir)
    }
}

impl Router {
    pub fn new(config: &Config) -> Router {
        let mut names = HashMap::new();
        // A tenant entry by its tenant id, never by its distribution's id,
        // which several entries share.
        for (alias, d) in &config.distributions {
            names.insert(d.routing_id().to_owned(), alias.clone());
        }
        // An alias wins over an equal id of another distribution.
        for alias in config.distributions.keys() {
            names.insert(alias.clone(), alias.clone());
        }
        let mut tenants: HashMap<String, Vec<&str>> = HashMap::new();
        for (alias, d) in &config.distributions {
            if d.tenant_id.is_some() && !names.contains_key(&d.id) {
                tenants.entry(d.id.clone()).or_default().push(alias);
            }
        }
        let multi_tenant = tenants
            .into_iter()
            .map(|(id, aliases)| {
                // A few are enough to show what to name; there may be
                // hundreds.
                let mut shown = aliases[..aliases.len().min(3)].join(", ");
                if aliases.len() > 3 {
                    shown.push_str(&format!(" and {} more", aliases.len() - 3));
                }
                (id, shown)
            })
            .collect();
        let mut buckets: HashMap<String, Vec<Route>> = HashMap::new();
        for r in &config.routing.s3 {
            let distribution = names
                .get(&r.distribution)
                .cloned()
                .ok_or_else(|| r.distribution.clone());
            buckets.entry(r.bucket.clone()).or_default().push(Route {
                distribution,
                mapping: KeyMapping::new(r),
            });
        }
        Router {
            names,
            multi_tenant,
            default: config.default_distribution().map(|(a, _)| a.to_owned()),
            buckets,
            tags_enabled: config
                .distributions
                .iter()
                .filter(|(_, d)| d.cache_tags)
                .map(|(alias, _)| alias.clone())
                .collect(),
            skip: skip_set(&config.routing.skip),
        }
    }

    /// The alias a request's `distribution` (an alias or an id) names, or
    /// the default distribution's when it names none.
    pub fn alias_of(&self, named: Option<&str>) -> Option<&str> {
        match named {
            Some(name) => self.names.get(name).map(String::as_str),
            None => self.default.as_deref(),
        }
    }

    /// Whether the distribution `alias` takes cache tags.
    pub(super) fn tags_enabled(&self, alias: &str) -> bool {
        self.tags_enabled.contains(alias)
    }

    /// Moves the paths of `request` that match a `routing.skip` pattern to
    /// its `skipped` list. Tags are not paths: no pattern applies to them.
    pub fn skip(&self, request: &mut PurgeRequest) {
        let Some(set) = &self.skip else {
            return;
        };
        if !request
            .paths
            .iter()
            .any(|p| !p.is_tag() && set.is_match(p.as_str()))
        {
            return;
        }
        let (skipped, kept): (Vec<CfPath>, Vec<CfPath>) = std::mem::take(&mut request.paths)
            .into_iter()
            .partition(|p| !p.is_tag() && set.is_match(p.as_str()));
        request.paths = kept;
        request.skipped.extend(skipped);
    }

    /// The alias of the distribution a request names, or the default one
    /// when it names none.
    pub(super) fn distribution(&self, name: Option<&str>) -> Result<&str, Rejection> {
        match name {
            Some(name) => self.names.get(name).map(String::as_str).ok_or_else(|| {
                match self.multi_tenant.get(name) {
                    Some(tenants) => Rejection::MultiTenantDistribution {
                        name: Snippet::short(name),
                        tenants: tenants.clone(),
                    },
                    None => Rejection::UnknownDistribution {
                        name: Snippet::short(name),
                    },
                }
            }),
            None => self
                .default
                .as_deref()
                .ok_or(Rejection::NoDefaultDistribution),
        }
    }

    /// Adds the paths that an S3 object `key` (the literal name, already
    /// decoded) in `bucket` stands for, by every route of the bucket whose
    /// `key_prefix` it starts with.
    pub(super) fn route_key(
        &self,
        bucket: &str,
        key: &str,
        out: &mut Grouper,
    ) -> Result<(), Rejection> {
        let routes = self
            .buckets
            .get(bucket)
            .ok_or_else(|| Rejection::UnroutedBucket {
                bucket: Snippet::short(bucket),
            })?;
        let mut routed = false;
        for route in routes {
            let Some(paths) = route.mapping.paths(key) else {
                continue;
            };
            routed = true;
            let alias =
                route
                    .distribution
                    .as_deref()
                    .map_err(|name| Rejection::UnknownDistribution {
                        name: Snippet::short(name),
                    })?;
            for path in paths {
                let p = CfPath::literal(&path).map_err(|error| Rejection::InvalidPath {
                    location: PathSource::Key {
                        bucket: Snippet::short(bucket),
                        key: Snippet::new(key),
                    },
                    path: Snippet::new(&path),
                    error,
                })?;
                out.push(alias, p);
            }
        }
        if !routed {
            tracing::debug!(
                bucket,
                key,
                "s3 key outside every route's key_prefix; skipped"
            );
        }
        Ok(())
    }
}

/// `routing.skip`'s patterns as one set. The configuration is validated at
/// start-up ([`Config::load`] names a bad pattern by its index), so a
/// pattern fails here only in a configuration built without validation:
/// it is left out, loudly, and the others still apply.
fn skip_set(patterns: &[String]) -> Option<regex::RegexSet> {
    if patterns.is_empty() {
        return None;
    }
    let valid: Vec<&String> = patterns
        .iter()
        .enumerate()
        .filter(|(i, p)| match crate::config::skip_pattern(p) {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(index = i, error = %e, "routing.skip pattern is not valid; left out");
                false
            }
        })
        .map(|(_, p)| p)
        .collect();
    match crate::config::skip_set(valid) {
        Ok(set) => Some(set),
        Err(e) => {
            tracing::error!(error = %e, "routing.skip patterns cannot be compiled together; none applies");
            None
        }
    }
}

/// `prefix` and `rest` with exactly one `/` between them: `/` + `a/b.js` is
/// `/a/b.js`, `/static` + `a.js` and `/static/` + `/a.js` are `/static/a.js`.
fn join(prefix: &str, rest: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    let rest = rest.trim_start_matches('/');
    let mut s = String::with_capacity(prefix.len() + 1 + rest.len());
    s.push_str(prefix);
    s.push('/');
    s.push_str(rest);
    s
}

/// The paths of one message, by distribution in the order they first
/// appear, each path once.
#[derive(Default)]
pub(super) struct Grouper {
    groups: Vec<(String, Vec<CfPath>)>,
    seen: HashSet<(usize, CfPath)>,
    /// The record being routed deletes its object.
    pub(super) removing: bool,
    /// Per group, the paths of deleted objects.
    removed: Vec<Vec<CfPath>>,
}

impl Grouper {
    fn push(&mut self, alias: &str, path: CfPath) {
        let group = match self.groups.iter().position(|(a, _)| a == alias) {
            Some(i) => i,
            None => {
                self.groups.push((alias.to_owned(), Vec::new()));
                self.removed.push(Vec::new());
                self.groups.len() - 1
            }
        };
        // The last record of an object says what became of it.
        self.removed[group].retain(|p| p != &path);
        if self.removing {
            self.removed[group].push(path.clone());
        }
        if self.seen.insert((group, path.clone())) {
            self.groups[group].1.push(path);
        }
    }

    /// One request per distribution; too many paths in all is `too_large`.
    pub(super) fn finish(self) -> Result<Vec<PurgeRequest>, Rejection> {
        let count = self.seen.len();
        if count > MAX_PATHS_PER_MESSAGE {
            return Err(Rejection::TooManyPaths { count });
        }
        Ok(self
            .groups
            .into_iter()
            .zip(self.removed)
            .map(|((distribution, paths), removed)| PurgeRequest {
                distribution,
                paths,
                skipped: Vec::new(),
                urgent: false,
                reason: None,
                requested_by: None,
                s3_removed: Some(removed),
            })
            .collect())
    }
}

#[cfg(test)]
mod tenant_tests {
    use super::super::{decode, rejection::RejectReason};
    use super::*;

    /// Two tenants of one multi-tenant distribution and an ordinary entry
    /// on the same distribution.
    const TENANTS: &str = r#"
[source]
kind = "local"
[distributions.shop-a]
id = "E3MULTITENANT"
tenant_id = "dt_2AaAa"
[distributions.shop-b]
id = "E3MULTITENANT"
tenant_id = "dt_2BbBb"
[distributions.www]
id = "E2ABCDEF123456"
"#;

    fn target(body: &str, toml: &str) -> Result<String, RejectReason> {
        let config = Config::from_parts(Some(toml), "test", std::iter::empty()).unwrap();
        decode(body, &Router::new(&config))
            .map(|r| r[0].distribution.clone())
            .map_err(|e| e.reason())
    }

    #[test]
    fn a_tenant_is_named_by_its_alias_or_tenant_id_never_by_the_shared_id() {
        let named = |name: &str| {
            target(
                &format!(r#"{{"distribution": "{name}", "paths": ["/a"]}}"#),
                TENANTS,
            )
        };
        assert_eq!(named("shop-a").as_deref(), Ok("shop-a"));
        assert_eq!(named("dt_2BbBb").as_deref(), Ok("shop-b"));
        assert_eq!(named("E2ABCDEF123456").as_deref(), Ok("www"));
        assert_eq!(
            named("E3MULTITENANT"),
            Err(RejectReason::UnknownDistribution)
        );
        let config = Config::from_parts(Some(TENANTS), "test", std::iter::empty()).unwrap();
        let err = decode(
            r#"{"distribution": "E3MULTITENANT", "paths": ["/a"]}"#,
            &Router::new(&config),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "distribution \"E3MULTITENANT\" is a multi-tenant distribution: name one of its \
             tenant entries (shop-a, shop-b) by its alias or tenant_id"
        );
    }
}
