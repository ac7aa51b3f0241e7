//! `[routing]`: which distribution a request that names none, or an S3
//! event, goes to, and the paths never purged.

use serde::{Deserialize, Serialize};

use super::{Config, Validator, one_of};

/// `[routing]`: where requests that do not name a distribution go.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Alias used by plain-text requests and native ones without
    /// `distribution`. When unset and exactly one distribution is configured,
    /// that one; when unset with several, such requests are rejected as
    /// `unknown_distribution`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_distribution: Option<String>,
    /// `[[routing.s3]]`: which bucket's S3 events purge which distribution.
    pub s3: Vec<S3Route>,
    /// Regular expressions (the `regex` crate's syntax) of paths that never
    /// need purging, such as content-hashed assets that every deploy names
    /// anew: matched against each decoded path as it would be submitted
    /// (percent-encoded), a match is dropped and counted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skip: Vec<String>,
}

/// The most a compiled `routing.skip` pattern, and the set of them, may
/// take. A pattern for paths needs a few kilobytes; a large counted
/// repetition (`a{1000000}`) would compile for seconds to megabytes and be
/// run against every path, so it is refused instead, by name.
pub const SKIP_SIZE_LIMIT: usize = 1 << 20;

/// One `routing.skip` pattern, compiled within [`SKIP_SIZE_LIMIT`].
pub fn skip_pattern(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(SKIP_SIZE_LIMIT)
        .build()
}

/// `routing.skip`'s patterns as the one set the router matches, within
/// [`SKIP_SIZE_LIMIT`].
pub fn skip_set<I, S>(patterns: I) -> Result<regex::RegexSet, regex::Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    regex::RegexSetBuilder::new(patterns)
        .size_limit(SKIP_SIZE_LIMIT)
        .build()
}

/// The regex crate's message on one line (it spans lines: the pattern, a
/// caret, the error).
fn one_line(e: &regex::Error) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `[[routing.s3]]`: maps an S3 object key to a CloudFront path.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Route {
    /// Bucket whose events this route takes; required.
    pub bucket: String,
    /// Alias of the distribution to purge; required.
    pub distribution: String,
    /// Only keys under this prefix are routed; it is stripped before
    /// `path_prefix` is prepended, so a bucket folder can map to the site root.
    pub key_prefix: String,
    /// Prepended to the rest of the key to form the path; starts with `/`
    /// because every CloudFront path does.
    pub path_prefix: String,
    /// When set, a key `dir/index.html` also purges `/dir/` and `/dir`,
    /// because CloudFront caches those URLs separately.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_document: Option<String>,
}

impl Default for S3Route {
    /// `bucket` and `distribution` have no default: empty ones are reported
    /// as missing.
    fn default() -> Self {
        S3Route {
            bucket: String::new(),
            distribution: String::new(),
            key_prefix: String::new(),
            path_prefix: "/".to_owned(),
            index_document: None,
        }
    }
}

impl Config {
    pub(super) fn check_routing(&self, v: &mut Validator) {
        if let Some(name) = &self.routing.default_distribution {
            self.check_alias_ref(v, "routing.default_distribution", name);
        }
        for (i, route) in self.routing.s3.iter().enumerate() {
            let key = format!("routing.s3[{i}]");
            if route.bucket.is_empty() {
                v.push(&format!("{key}.bucket"), "is required");
            } else if route.bucket.contains('/') || route.bucket.chars().any(char::is_whitespace) {
                v.push(
                    &format!("{key}.bucket"),
                    format!(
                        "{:?} is not a bucket name (no \"/\" or spaces)",
                        route.bucket
                    ),
                );
            }
            if route.distribution.is_empty() {
                v.push(&format!("{key}.distribution"), "is required");
            } else {
                self.check_alias_ref(v, &format!("{key}.distribution"), &route.distribution);
            }
            if !route.path_prefix.starts_with('/') {
                v.push(
                    &format!("{key}.path_prefix"),
                    format!("{:?} must start with \"/\"", route.path_prefix),
                );
            }
            if let Some(index) = &route.index_document
                && (index.is_empty() || index.contains('/'))
            {
                v.push(
                    &format!("{key}.index_document"),
                    format!("{index:?} must be a file name such as \"index.html\""),
                );
            }
        }
        let mut compiled = true;
        for (i, pattern) in self.routing.skip.iter().enumerate() {
            if let Err(e) = skip_pattern(pattern) {
                compiled = false;
                v.push(
                    &format!("routing.skip[{i}]"),
                    format!(
                        "{pattern:?} is not a valid regular expression: {}",
                        one_line(&e)
                    ),
                );
            } else if pattern.is_empty() {
                v.push(
                    &format!("routing.skip[{i}]"),
                    "is empty: it would match every path and purge nothing",
                );
            }
        }
        // Each may compile and the set still not (its size limit counts
        // them all): the daemon uses the set.
        if compiled
            && !self.routing.skip.is_empty()
            && let Err(e) = skip_set(&self.routing.skip)
        {
            v.push(
                "routing.skip",
                format!("the patterns cannot be compiled together: {}", one_line(&e)),
            );
        }
    }

    fn check_alias_ref(&self, v: &mut Validator, key: &str, name: &str) {
        if self.distributions.contains_key(name) {
            return;
        }
        match self.distribution(name) {
            Some((alias, _)) => v.push(
                key,
                format!("{name:?} is a distribution id: name its alias {alias:?}"),
            ),
            None => {
                let aliases: Vec<&str> = self.distributions.keys().map(String::as_str).collect();
                v.push(
                    key,
                    format!(
                        "{name:?} is not a configured distribution (configured: {})",
                        one_of(&aliases)
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::minimal;

    #[test]
    fn routing_must_name_an_alias() {
        let mut cfg = minimal();
        cfg.routing.default_distribution = Some("E2ABCDEF123456".into());
        cfg.routing.s3.push(S3Route {
            bucket: "b".into(),
            distribution: "wwx".into(),
            path_prefix: "site/".into(),
            ..S3Route::default()
        });
        let problems: Vec<String> = cfg.problems().iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                "routing.default_distribution \"E2ABCDEF123456\" is a distribution id: name its alias \"www\"",
                "routing.s3[0].distribution \"wwx\" is not a configured distribution (configured: \"www\")",
                "routing.s3[0].path_prefix \"site/\" must start with \"/\"",
            ]
        );
    }

    #[test]
    fn skip_patterns_are_compiled_at_load_and_named_by_index() {
        let mut cfg = minimal();
        cfg.routing.skip = vec![
            r"\.[0-9a-f]{8}\.js$".into(),
            "(".into(),
            String::new(),
            "[z-a]".into(),
        ];
        let problems: Vec<String> = cfg.problems().iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].starts_with(
                "routing.skip[1] \"(\" is not a valid regular expression: regex parse error:"
            ),
            "{problems:?}"
        );
        assert!(!problems[0].contains('\n'));
        assert_eq!(
            problems[1],
            "routing.skip[2] is empty: it would match every path and purge nothing"
        );
        assert!(
            problems[2].starts_with("routing.skip[3] \"[z-a]\""),
            "{problems:?}"
        );
        cfg.routing.skip.truncate(1);
        assert!(cfg.problems().is_empty());
    }

    #[test]
    fn a_skip_pattern_that_compiles_too_big_is_refused_by_name() {
        let mut cfg = minimal();
        // Within the regex crate's own default limit (10 MiB), beyond ours.
        cfg.routing.skip = vec![r"\.js$".into(), "a{100000}".into()];
        assert!(regex::Regex::new("a{100000}").is_ok());
        let problems: Vec<String> = cfg.problems().iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0]
                .starts_with("routing.skip[1] \"a{100000}\" is not a valid regular expression:")
                && problems[0].contains("size limit"),
            "{problems:?}"
        );
        // Patterns small one by one but too big together: the set is named.
        cfg.routing.skip = (0..12).map(|i| format!("[a-z]{{{}}}x", 900 + i)).collect();
        let problems: Vec<String> = cfg.problems().iter().map(|p| p.to_string()).collect();
        assert!(
            problems.iter().all(|p| p.starts_with("routing.skip ")),
            "{problems:?}"
        );
    }
}
