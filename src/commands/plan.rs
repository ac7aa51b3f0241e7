//! `cfpurge plan`: runs the planner on paths read from a stream and prints
//! what would be submitted, with no AWS calls. Operators use it to see what
//! a threshold or a capacity does to their own traffic. A line `#name` is
//! the cache tag `name`; `# ...` (with a space) or a lone `#` is a comment,
//! so the plan's own summary lines read back as comments.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::catalog::{self, Catalog, CatalogError};
use crate::config::Strategy as Configured;
use crate::path::{CfPath, ItemError};
use crate::planner::{self, Capacity, Entry, Settings, Strategy};

/// Output format of `cfpurge plan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// What `cfpurge plan`'s command line overrides; `None` keeps the
/// configuration's value (or the default's, without a configuration).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Its in-flight limits become the capacity (alias, id or tenant id).
    pub distribution: Option<String>,
    pub strategy: Option<Configured>,
    pub blast_per_path: Option<f64>,
    pub max_exact: Option<usize>,
    pub max_wildcards: Option<usize>,
    pub budget: Option<usize>,
    pub wildcard_threshold: Option<usize>,
    pub min_wildcard_depth: Option<usize>,
    pub allow_root_wildcard: Option<bool>,
}

/// The plan's settings: the configuration's (if any), the overrides on
/// top. An error names the option that is wrong.
#[derive(Clone, Debug, PartialEq)]
pub struct Settled {
    pub capacity: Capacity,
    pub settings: Settings,
    pub strategy: Configured,
    pub blast_per_path: f64,
}

/// Merges `overrides` into `config`'s coalesce settings and the named
/// distribution's limits.
pub fn settle(
    config: Option<&crate::config::Config>,
    overrides: &Overrides,
) -> Result<Settled, String> {
    let coalesce = config.map(|c| c.coalesce.clone()).unwrap_or_default();
    let blast_per_path = overrides.blast_per_path.unwrap_or(coalesce.blast_per_path);
    if !(blast_per_path > 0.0 && blast_per_path.is_finite()) {
        return Err("--blast-per-path must be > 0".to_owned());
    }
    let mut capacity = Capacity::AWS;
    let mut settings = Settings::default();
    if let Some(cfg) = config {
        settings = Settings::from(&cfg.coalesce);
        if let Some(name) = &overrides.distribution {
            // Named as in requests: alias, id, or a tenant's tenant_id.
            let (_, d) = cfg.distribution(name).ok_or_else(|| {
                format!("--distribution {name:?} is not a configured distribution")
            })?;
            capacity.exact = d.max_inflight_paths;
            capacity.wildcard = d.max_inflight_wildcards;
        }
    }
    capacity.exact = overrides.max_exact.unwrap_or(capacity.exact);
    capacity.wildcard = overrides.max_wildcards.unwrap_or(capacity.wildcard);
    capacity.paths = overrides.budget.unwrap_or(capacity.paths);
    let o = overrides;
    settings.wildcard_threshold = o.wildcard_threshold.unwrap_or(settings.wildcard_threshold);
    settings.min_wildcard_depth = o.min_wildcard_depth.unwrap_or(settings.min_wildcard_depth);
    settings.allow_root_wildcard = o
        .allow_root_wildcard
        .unwrap_or(settings.allow_root_wildcard);
    if settings.wildcard_threshold < 2 {
        return Err("--wildcard-threshold must be ≥ 2".to_owned());
    }
    Ok(Settled {
        capacity,
        settings,
        strategy: o.strategy.unwrap_or(coalesce.strategy),
        blast_per_path,
    })
}

/// What to plan with.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// Shown in the summary; the capacity already reflects its limits.
    pub distribution: Option<String>,
    pub format: Format,
    /// Every path the site serves, to measure over-reach.
    pub universe: Option<PathBuf>,
    /// What the site serves, one path per line: plan with it as the daemon
    /// does with a distribution's catalog, and report the blast.
    pub catalog: Option<PathBuf>,
    /// `coalesce.strategy`; `least_blast` needs `catalog`.
    pub strategy: Configured,
    /// `coalesce.blast_per_path`.
    pub blast_per_path: f64,
    /// List the over-reach (the universe's paths the wildcards purge
    /// beyond the request), not only count it; needs `universe`.
    pub show_overreach: bool,
    pub capacity: Capacity,
    pub settings: Settings,
}

/// A line of input that could not be planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub error: ItemError,
}

/// Why `cfpurge plan` could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read the paths: {0}")]
    Input(#[source] io::Error),
    #[error("cannot read the universe file {path}: {source}")]
    Universe {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the catalog: {0}")]
    Catalog(#[source] CatalogError),
    #[error("cannot write the plan: {0}")]
    Output(#[source] io::Error),
}

/// Reads paths one per line, and with `tags` cache tags (`#name`). Blank
/// lines are skipped, and so are comments: every line starting with `#`
/// without `tags`, else `#` alone or followed by white space. Surrounding
/// white space is trimmed. Bad lines are returned with their 1-based number
/// and do not stop the rest.
pub fn read_paths(input: impl BufRead, tags: bool) -> io::Result<(Vec<CfPath>, Vec<BadLine>)> {
    let mut paths = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        let text = line.trim();
        let comment = match text.strip_prefix('#') {
            Some(rest) => !tags || rest.is_empty() || rest.starts_with(char::is_whitespace),
            None => false,
        };
        if text.is_empty() || comment {
            continue;
        }
        match CfPath::parse_item(text) {
            Ok(p) => paths.push(p),
            Err(error) => bad.push(BadLine { line: i + 1, error }),
        }
    }
    Ok((paths, bad))
}

#[derive(Serialize)]
struct JsonPlan<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    distribution: Option<&'a str>,
    paths: &'a [CfPath],
    deferred: Vec<&'a CfPath>,
    requested: usize,
    unique: usize,
    exact: usize,
    wildcard: usize,
    tags: usize,
    billed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    strategy: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    blast: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    overreach: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    overreach_paths: Option<&'a [&'a CfPath]>,
}

/// Plans the paths read from `input`, writes the plan to `out` and the bad
/// lines to `err`. Returns how many lines were bad: the binary exits 1 when
/// there were any, after planning the rest.
pub fn run(
    options: &PlanOptions,
    input: impl BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<usize, PlanError> {
    let (paths, bad) = read_paths(input, true).map_err(PlanError::Input)?;
    for b in &bad {
        writeln!(err, "line {}: {}", b.line, b.error).map_err(PlanError::Output)?;
    }
    let universe = match &options.universe {
        Some(file) => Some(read_universe(file, err)?),
        None => None,
    };
    let catalog: Option<Catalog> = match &options.catalog {
        Some(file) => Some(catalog::file::load(file).map_err(PlanError::Catalog)?),
        None => None,
    };
    let strategy = Strategy::new(options.strategy, catalog.as_ref(), options.blast_per_path);
    if options.strategy == Configured::LeastBlast && catalog.is_none() {
        writeln!(
            err,
            "note: least_blast needs a catalog (--catalog FILE); planned with threshold"
        )
        .map_err(PlanError::Output)?;
    }
    let entries: Vec<Entry> = paths
        .into_iter()
        .enumerate()
        .map(|(i, p)| Entry::new(p, i as u64))
        .collect();
    let plan = planner::plan_with(&entries, options.capacity, &options.settings, strategy);
    let blast = catalog.as_ref().map(|_| plan.figures.blast);
    let requested: Vec<CfPath> = entries.iter().map(|e| e.path.clone()).collect();
    let reached = universe
        .as_deref()
        .map(|u| planner::overreach_paths(&plan.paths, &requested, u));
    let overreach = reached.as_ref().map(Vec::len);
    let listed = reached.as_deref().filter(|_| options.show_overreach);
    let deferred: Vec<&CfPath> = plan.deferred.iter().map(|&i| &entries[i].path).collect();
    let f = plan.figures;
    let written = match options.format {
        Format::Json => {
            let doc = JsonPlan {
                distribution: options.distribution.as_deref(),
                paths: &plan.paths,
                deferred,
                requested: f.requested,
                unique: f.unique,
                exact: f.exact,
                wildcard: f.wildcard,
                tags: f.tags,
                billed: f.billed(),
                strategy: catalog.as_ref().map(|_| strategy.name()),
                blast,
                overreach,
                overreach_paths: listed,
            };
            serde_json::to_writer_pretty(&mut *out, &doc)
                .map_err(io::Error::from)
                .and_then(|()| writeln!(out))
        }
        Format::Text => (|| {
            for p in &plan.paths {
                writeln!(out, "{p}")?;
            }
            let mut summary = String::from("#");
            if let Some(d) = &options.distribution {
                summary.push_str(&format!(" distribution {d}:"));
            }
            let tags = if f.tags > 0 {
                format!(" + {} tag", f.tags)
            } else {
                String::new()
            };
            summary.push_str(&format!(
                " requested {}, unique {}, submitted {} exact + {} wildcard{tags} = {} billed, deferred {}",
                f.requested,
                f.unique,
                f.exact,
                f.wildcard,
                f.billed(),
                f.deferred
            ));
            if let Some(b) = blast {
                summary.push_str(&format!(", blast {b} ({})", strategy.name()));
            }
            if let Some(o) = overreach {
                summary.push_str(&format!(", over-reach {o}"));
            }
            writeln!(out, "{summary}")?;
            for d in deferred {
                writeln!(out, "# deferred {d}")?;
            }
            for r in listed.into_iter().flatten() {
                writeln!(out, "# over-reach {r}")?;
            }
            Ok(())
        })(),
    };
    written.map_err(PlanError::Output)?;
    Ok(bad.len())
}

/// Reads the universe file: one served path per line, in the same syntax as
/// the input. Bad lines are reported and skipped.
fn read_universe(file: &Path, err: &mut dyn Write) -> Result<Vec<CfPath>, PlanError> {
    let io_err = |source| PlanError::Universe {
        path: file.to_path_buf(),
        source,
    };
    let f =
        crate::regular_file::open(file, crate::catalog::file::MAX_FILE_BYTES).map_err(io_err)?;
    // Served paths only: a `#` line is a comment there.
    let (paths, bad) = read_paths(io::BufReader::new(f), false).map_err(io_err)?;
    // One line per rule broken, not one per bad path: a universe file is
    // usually generated, and its faults come in thousands.
    let mut by_rule: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for b in &bad {
        by_rule.entry(b.error.to_string()).or_insert((b.line, 0)).1 += 1;
    }
    for (rule, (first, count)) in by_rule {
        writeln!(
            err,
            "{}: {count} line(s) skipped, first at line {first}: {rule}",
            file.display()
        )
        .map_err(PlanError::Output)?;
    }
    Ok(paths)
}

/// `cfpurge plan`'s options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file for the coalesce settings and distribution
    /// limits; without one (and with no file at the default place),
    /// the defaults apply.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Distribution alias or id: its configured in-flight limits become
    /// the capacity.
    #[arg(long)]
    distribution: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// File with every path the site serves, one per line: reports how
    /// many of them the plan's wildcards reach without being requested.
    #[arg(long)]
    universe: Option<PathBuf>,
    /// Catalog file (one served path per line): plan with it as the
    /// daemon does with a distribution's catalog, and report the blast
    /// (served paths the plan's wildcards purge that were not requested).
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Overrides coalesce.strategy (least_blast needs --catalog).
    #[arg(long, value_enum)]
    strategy: Option<StrategyArg>,
    /// Overrides coalesce.blast_per_path: unrequested objects purged
    /// that one billed path is worth.
    #[arg(long)]
    blast_per_path: Option<f64>,
    /// With --universe: also list the paths the wildcards reach without
    /// being requested.
    #[arg(long, requires = "universe")]
    show_overreach: bool,
    /// Exact paths that may go in flight (default: the distribution's
    /// limit, else CloudFront's 3,000).
    #[arg(long)]
    max_exact: Option<usize>,
    /// Wildcard paths that may go in flight (default: the
    /// distribution's limit, else CloudFront's 15).
    #[arg(long)]
    max_wildcards: Option<usize>,
    /// Paths the budget allows in this plan (default: no limit).
    #[arg(long)]
    budget: Option<usize>,
    /// Overrides coalesce.wildcard_threshold.
    #[arg(long)]
    wildcard_threshold: Option<usize>,
    /// Overrides coalesce.min_wildcard_depth.
    #[arg(long)]
    min_wildcard_depth: Option<usize>,
    /// Overrides coalesce.allow_root_wildcard.
    #[arg(long)]
    allow_root_wildcard: Option<bool>,
}

/// `--strategy`'s spellings: the configuration's, and a dashed one.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum StrategyArg {
    Threshold,
    #[value(name = "least_blast", alias = "least-blast")]
    LeastBlast,
}

impl Args {
    /// What the command line overrides of the configuration.
    fn overrides(&self) -> Overrides {
        Overrides {
            distribution: self.distribution.clone(),
            strategy: self.strategy.map(|s| match s {
                StrategyArg::Threshold => Configured::Threshold,
                StrategyArg::LeastBlast => Configured::LeastBlast,
            }),
            blast_per_path: self.blast_per_path,
            max_exact: self.max_exact,
            max_wildcards: self.max_wildcards,
            budget: self.budget,
            wildcard_threshold: self.wildcard_threshold,
            min_wildcard_depth: self.min_wildcard_depth,
            allow_root_wildcard: self.allow_root_wildcard,
        }
    }
}

/// `cfpurge plan`: the configuration (if any) and the options settled,
/// stdin planned, the plan on stdout and bad lines on stderr. Exit 1 when
/// a line could not be planned; a reader that stops early ends it with 0.
pub fn main(args: Args) -> Result<u8, super::Failure> {
    let loaded = super::optional_config(args.config.as_deref())?;
    let settled = settle(loaded.as_ref(), &args.overrides()).map_err(super::Failure::usage)?;
    let options = PlanOptions {
        distribution: args.distribution,
        format: args.format,
        universe: args.universe,
        catalog: args.catalog,
        strategy: settled.strategy,
        blast_per_path: settled.blast_per_path,
        show_overreach: args.show_overreach,
        capacity: settled.capacity,
        settings: settled.settings,
    };
    match run(
        &options,
        io::stdin().lock(),
        &mut io::stdout().lock(),
        &mut io::stderr().lock(),
    ) {
        Ok(bad) => Ok(if bad > 0 { 1 } else { 0 }),
        Err(PlanError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(super::Failure::runtime(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> crate::config::Config {
        let toml = r#"
[source]
kind = "local"
[distributions.www]
id = "E2ABCDEF123456"
max_inflight_paths = 500
max_inflight_wildcards = 4
[coalesce]
wildcard_threshold = 7
blast_per_path = 3.5
[cloudfront]
mode = "simulate"
"#;
        crate::config::Config::from_parts(Some(toml), "test", std::iter::empty()).expect("config")
    }

    #[test]
    fn the_distribution_limits_and_the_configuration_apply_and_options_win() {
        let cfg = config();
        let named = Overrides {
            distribution: Some("www".into()),
            ..Overrides::default()
        };
        let s = settle(Some(&cfg), &named).unwrap();
        assert_eq!((s.capacity.exact, s.capacity.wildcard), (500, 4));
        assert_eq!(s.settings.wildcard_threshold, 7);
        assert_eq!(s.blast_per_path, 3.5);
        let over = Overrides {
            max_wildcards: Some(2),
            wildcard_threshold: Some(3),
            blast_per_path: Some(9.0),
            ..named
        };
        let s = settle(Some(&cfg), &over).unwrap();
        assert_eq!((s.capacity.exact, s.capacity.wildcard), (500, 2));
        assert_eq!(s.settings.wildcard_threshold, 3);
        assert_eq!(s.blast_per_path, 9.0);
        // Without a configuration, CloudFront's own limits.
        let s = settle(None, &Overrides::default()).unwrap();
        assert_eq!(s.capacity, Capacity::AWS);
    }

    #[test]
    fn a_wrong_option_is_named() {
        let cfg = config();
        let e = |o: Overrides| settle(Some(&cfg), &o).unwrap_err();
        assert!(
            e(Overrides {
                distribution: Some("nope".into()),
                ..Overrides::default()
            })
            .contains("--distribution \"nope\"")
        );
        assert!(
            e(Overrides {
                blast_per_path: Some(0.0),
                ..Overrides::default()
            })
            .contains("--blast-per-path")
        );
        assert!(
            e(Overrides {
                wildcard_threshold: Some(1),
                ..Overrides::default()
            })
            .contains("--wildcard-threshold")
        );
    }
}
