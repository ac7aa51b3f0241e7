//! Loading: the file read strictly by the `toml` crate, merged with the
//! `CFPURGE__SECTION__KEY` overrides by the `config` crate, deserialized
//! and validated; every error turned into a [`Problem`] naming the key.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{CatalogSource, Config, ENV_PREFIX, ENV_SEPARATOR, StoreKind};

/// What is wrong with one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The key in dotted form (`batching.quiet_seconds`,
    /// `routing.s3[0].bucket`); empty when the problem has no single key.
    pub key: String,
    /// What is wrong, written to follow the key.
    pub message: String,
    /// The file's line (1-based) when the problem is a value written there
    /// that does not fit the schema.
    pub line: Option<usize>,
}

impl Problem {
    pub(super) fn new(key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            key: key.into(),
            message: message.into(),
            line: None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{} {}", self.key, self.message)
        }
    }
}

/// Why the configuration could not be loaded. The binary exits with status 2
/// and prints the message, which names the file, the key and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{origin}: line {line}, column {column}: {message}")]
    Syntax {
        /// The file.
        origin: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the TOML parser expected.
        message: String,
    },
    /// Keys or values are wrong; one problem per line.
    #[error("{}", problem_lines(origin, problems))]
    Invalid {
        /// The file.
        origin: String,
        /// Every problem found (at least one).
        problems: Vec<Problem>,
    },
    /// The effective configuration could not be printed.
    #[error("cannot print the configuration: {0}")]
    Print(String),
}

fn problem_lines(origin: &str, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| format!("{origin}: {p}")).collect();
    lines.join("\n")
}

/// The largest configuration file read: a thousand distributions take
/// well under 1 MiB.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

impl Config {
    /// Reads `file`, applies the `CFPURGE__SECTION__KEY` variables of the
    /// process environment and validates the result.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text =
            crate::regular_file::read_to_string(file, MAX_CONFIG_BYTES).map_err(|source| {
                ConfigError::Read {
                    path: file.to_path_buf(),
                    source,
                }
            })?;
        let origin = file.display().to_string();
        let mut env = Vec::new();
        for (name, value) in std::env::vars_os() {
            // Only our variables matter; others may hold anything.
            let Some(name) = name.to_str().filter(|n| is_ours(n)).map(str::to_owned) else {
                continue;
            };
            match value.into_string() {
                Ok(value) => env.push((name, value)),
                Err(_) => {
                    return Err(ConfigError::Invalid {
                        origin,
                        problems: vec![Problem::new(
                            "",
                            format!("environment variable {name} is not valid UTF-8"),
                        )],
                    });
                }
            }
        }
        let config = Config::from_parts(Some(&text), &origin, env)?;
        let problems = config.check_files();
        if !problems.is_empty() {
            return Err(ConfigError::Invalid { origin, problems });
        }
        Ok(config)
    }

    /// The files the configuration names that cfpurge reads, looked at
    /// (not opened): one that exists must be a regular file, links
    /// followed. A device or a FIFO would be read for ever or block the
    /// read (the reads refuse them too; this names the key at start-up).
    /// A file that is not there yet is not a problem here: a ledger is
    /// created, and a catalog file's absence is reported when it is read.
    fn check_files(&self) -> Vec<Problem> {
        let mut files = Vec::new();
        for (alias, d) in &self.distributions {
            if let (CatalogSource::File, Some(file)) = (d.catalog, &d.catalog_file) {
                files.push((format!("distributions.{alias}.catalog_file"), file));
            }
        }
        if self.budget.store == StoreKind::File {
            files.push(("budget.ledger_path".to_owned(), &self.budget.ledger_path));
        }
        files
            .into_iter()
            .filter_map(|(key, file)| {
                let e = crate::regular_file::check(file).err()?;
                Some(Problem::new(
                    key,
                    format!("{:?}: {e}", file.display().to_string()),
                ))
            })
            .collect()
    }

    /// Builds the configuration from the file's text (`None`: defaults only)
    /// and environment variables given as name and value pairs (only those
    /// starting with `CFPURGE_` are looked at), then validates it. `origin`
    /// names the file in messages. [`Config::load`] calls this with the
    /// process environment; tests call it with their own.
    pub fn from_parts(
        toml_text: Option<&str>,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let invalid = |problems: Vec<Problem>| ConfigError::Invalid {
            origin: origin.to_owned(),
            problems,
        };

        let mut overrides = config::Map::new();
        let mut problems = Vec::new();
        for (name, value) in env {
            if !is_ours(&name) {
                continue;
            }
            if let Some(hint) = misspelt_override(&name) {
                problems.push(Problem::new("", hint));
                continue;
            }
            overrides.insert(name, value);
        }
        if !problems.is_empty() {
            return Err(invalid(problems));
        }

        let mut builder = config::Config::builder();
        if let Some(text) = toml_text {
            // The file alone is read strictly first: the toml crate gives
            // the line, and it refuses `quiet_seconds = 1.5` or `id = 5`,
            // which the config crate would round or turn into a string.
            if let Err(e) = text.parse::<toml::Table>() {
                let (line, column) = e
                    .span()
                    .map(|span| line_column(text, span.start))
                    .unwrap_or((1, 1));
                return Err(ConfigError::Syntax {
                    origin: origin.to_owned(),
                    line,
                    column,
                    message: e.message().trim_end().to_owned(),
                });
            }
            if let Err(e) = toml::from_str::<Config>(text) {
                return Err(invalid(vec![from_toml_error(e, text)]));
            }
            builder = builder.add_source(config::File::from_str(text, config::FileFormat::Toml));
        }
        let env_source = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator(ENV_SEPARATOR)
            .separator(ENV_SEPARATOR)
            .source(Some(overrides.clone()));
        let merged = builder
            .add_source(env_source)
            .build()
            .map_err(|e| invalid(vec![from_config_error(e, &overrides)]))?;
        let mut cfg: Config = merged
            .try_deserialize()
            .map_err(|e| invalid(vec![from_config_error(e, &overrides)]))?;

        cfg.resolve();
        let mut problems = cfg.problems();
        if problems.is_empty() {
            return Ok(cfg);
        }
        for p in &mut problems {
            if let Some(var) = env_var_for(&p.key, &overrides) {
                p.message.push_str(&format!(" (set by {var})"));
            }
        }
        Err(invalid(problems))
    }
}

const SECTIONS: &[&str] = &[
    "aws",
    "source",
    "distributions",
    "accounts",
    "routing",
    "batching",
    "coalesce",
    "cloudfront",
    "budget",
    "catalog",
    "coordination",
    "shutdown",
    "http",
    "log",
];

/// Whether an environment variable is meant for the configuration: a
/// `CFPURGE_` name other than `CFPURGE_CONFIG`, which names the file.
fn is_ours(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper.starts_with("CFPURGE_") && upper != "CFPURGE_CONFIG"
}

/// A hint when a variable looks like an override spelt with single
/// underscores after the prefix (`CFPURGE_SOURCE_QUEUE_URL`), which the
/// config crate would otherwise ignore without a word.
fn misspelt_override(name: &str) -> Option<String> {
    let upper = name.to_ascii_uppercase();
    let rest = upper.strip_prefix("CFPURGE_")?;
    if rest.starts_with('_') {
        return None;
    }
    let section = SECTIONS
        .iter()
        .find(|s| rest.starts_with(&format!("{}_", s.to_ascii_uppercase())))?;
    let key = &rest[section.len()..].trim_start_matches('_');
    Some(format!(
        "environment variable {name} is not an override: they are spelt with double underscores, \
         CFPURGE__{}__{key}",
        section.to_ascii_uppercase()
    ))
}

/// The override variable that sets `key`, if one does.
fn env_var_for(key: &str, overrides: &config::Map<String, String>) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    let wanted = format!(
        "{ENV_PREFIX}{ENV_SEPARATOR}{}",
        key.replace('.', ENV_SEPARATOR)
    )
    .to_ascii_uppercase();
    overrides
        .keys()
        .find(|name| name.to_ascii_uppercase() == wanted)
        .cloned()
}

/// Turns the toml crate's error about the file into a problem naming the
/// key and the line.
fn from_toml_error(mut err: toml::de::Error, text: &str) -> Problem {
    let start = err.span().map(|s| s.start);
    // Without the input, Display ends with "in `a.b`": the only way the
    // crate tells the key path.
    err.set_input(None);
    let shown = err.to_string();
    let mut key = shown
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("in `").and_then(|k| k.strip_suffix('`')))
        .unwrap_or_default()
        .to_owned();
    let offset = start.unwrap_or(0);
    // Arrays lose their index in that path; count the headers before.
    if let Some(rest) = key.strip_prefix("routing.s3") {
        let headers = text[..offset.min(text.len())]
            .lines()
            .filter(|l| l.replace(' ', "").starts_with("[[routing.s3]]"))
            .count();
        if headers > 0 {
            key = format!("routing.s3[{}]{rest}", headers - 1);
        }
    }
    let mut p = describe(&key, err.message());
    p.line = start.map(|s| line_column(text, s).0);
    p
}

/// Turns the config crate's error (a value from the environment) into a
/// problem naming the key and the variable.
fn from_config_error(err: config::ConfigError, overrides: &config::Map<String, String>) -> Problem {
    let mut p = match err {
        config::ConfigError::NotFound(key) => Problem::new(key, "is required"),
        config::ConfigError::Type {
            unexpected,
            expected,
            key,
            ..
        } => describe(
            &key.unwrap_or_default(),
            &format!("invalid type: {unexpected}, expected {expected}"),
        ),
        config::ConfigError::At { error, key, .. } => {
            let inner = match *error {
                config::ConfigError::Message(m) => m,
                other => other.to_string(),
            };
            describe(&key.unwrap_or_default(), &inner)
        }
        config::ConfigError::Message(m) => describe("", &m),
        other => Problem::new("", other.to_string()),
    };
    if let Some(var) = env_var_for(&p.key, overrides) {
        p.message
            .push_str(&format!(" (from environment variable {var})"));
    }
    p
}

/// Rewrites serde's messages so that they read after the full key
/// ("batching.quiet_secs is not a known key", "... has the wrong type");
/// messages written here (choices, addresses) are kept as they are.
fn describe(key: &str, message: &str) -> Problem {
    let join = |field: &str| {
        if key.is_empty() {
            field.to_owned()
        } else {
            format!("{key}.{field}")
        }
    };
    let field_and_rest = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once('`'))
            .map(|(field, rest)| {
                (
                    field.to_owned(),
                    rest.trim_start_matches(',').trim().to_owned(),
                )
            })
    };
    if let Some((field, hint)) = field_and_rest("unknown field `") {
        let message = if hint.is_empty() {
            "is not a known key".to_owned()
        } else {
            format!("is not a known key ({hint})")
        };
        return Problem::new(join(&field), message);
    }
    if let Some((field, _)) = field_and_rest("missing field `") {
        return Problem::new(join(&field), "is required");
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        return Problem::new(
            key,
            format!("has the wrong type: got {}", plain_types(rest)),
        );
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        return Problem::new(key, format!("has a wrong value: got {}", plain_types(rest)));
    }
    Problem::new(key, message)
}

/// Says "a whole number" and "a table" where serde names Rust types.
fn plain_types(message: &str) -> String {
    let mut out = message
        .replace("expected u64", "expected a whole number")
        .replace("expected u32", "expected a whole number")
        .replace("expected usize", "expected a whole number")
        .replace("expected f64", "expected a number")
        .replace("expected a sequence", "expected a list")
        .replace("expected a map", "expected a table");
    if let Some(at) = out.find("expected struct ") {
        out.replace_range(at.., "expected a table");
    }
    out
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelt_overrides_are_caught() {
        assert!(
            misspelt_override("CFPURGE_SOURCE_QUEUE_URL")
                .unwrap()
                .contains("CFPURGE__SOURCE__QUEUE_URL")
        );
        assert!(misspelt_override("CFPURGE__SOURCE__QUEUE_URL").is_none());
        assert!(misspelt_override("CFPURGE_URL").is_none());
    }

    /// Found by fuzzing (fuzz/regressions/config/): an override may set a
    /// number above TOML's integer range, and `check-config` then printed a
    /// file that does not load ("u64 value was too large").
    #[test]
    fn overrides_above_the_toml_integer_range_are_a_problem() {
        let text = "[source]\nkind = \"local\"\n[distributions.www]\nid = \"E2ABCDEF123456\"\n";
        for key in [
            "BUDGET__MONTHLY_PATHS",
            "BUDGET__BURST_PATHS",
            "COALESCE__WILDCARD_THRESHOLD",
        ] {
            let env = [(format!("CFPURGE__{key}"), "18446744073709551615".to_owned())];
            let Err(ConfigError::Invalid { problems, .. }) =
                Config::from_parts(Some(text), "t.toml", env)
            else {
                panic!("{key} = u64::MAX was accepted");
            };
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(
                problems[0]
                    .message
                    .starts_with("must be ≤ 9223372036854775807"),
                "{problems:?}"
            );
        }
        let env = [(
            "CFPURGE__BUDGET__MONTHLY_PATHS".to_owned(),
            "9223372036854775807".to_owned(),
        )];
        let cfg = Config::from_parts(Some(text), "t.toml", env).unwrap();
        let printed = toml::to_string(&cfg).unwrap();
        Config::from_parts(Some(&printed), "printed.toml", []).unwrap();
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("a\nbc\nd", 0), (1, 1));
        assert_eq!(line_column("a\nbc\nd", 3), (2, 2));
        assert_eq!(line_column("a\nbc\nd", 5), (3, 1));
    }
}
