//! `cfpurge replay`: reads a trace, runs it through the daemon's own core
//! on a virtual clock ([`crate::replay`]) and prints one row per month.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::SystemTime;

use crate::catalog::{self, CatalogError};
use crate::config::Config;
use crate::replay::{self, MonthRow, ReplayOptions, Replayed};

/// Output format of `cfpurge replay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// What `cfpurge replay` was asked.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub trace: PathBuf,
    pub catalog: Option<PathBuf>,
    /// Where to write one JSON line per CreateInvalidation.
    pub batches: Option<PathBuf>,
    /// Compute each month's offline optimum (with `catalog`).
    pub optimum: bool,
    pub format: Format,
}

/// Why `cfpurge replay` could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read the trace {path}: {source}")]
    Trace {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the catalog: {0}")]
    Catalog(#[source] CatalogError),
    #[error("cannot write the batches to {path}: {source}")]
    Batches {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the virtual clock: {0}")]
    Runtime(#[source] io::Error),
    #[error("cannot write the output: {0}")]
    Output(#[source] io::Error),
}

/// The largest trace read (it is held whole while the replay runs).
pub const MAX_TRACE_BYTES: u64 = 1 << 30;

/// Runs the replay and prints its table to `out`; lines of the trace it
/// cannot accept are reported on `err`. Returns how many there were.
pub fn run(
    config: &Config,
    options: &Options,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<usize, ReplayError> {
    let text =
        crate::regular_file::read_to_string(&options.trace, MAX_TRACE_BYTES).map_err(|source| {
            ReplayError::Trace {
                path: options.trace.clone(),
                source,
            }
        })?;
    let (trace, bad) = replay::read_trace(&text, SystemTime::now());
    for b in &bad {
        let _ = writeln!(err, "{}:{}: {}", options.trace.display(), b.line, b.reason);
    }
    let catalog = match &options.catalog {
        Some(file) => Some(catalog::file::load(file).map_err(ReplayError::Catalog)?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(ReplayError::Runtime)?;
    let replayed = runtime.block_on(replay::run(
        config,
        &trace,
        &ReplayOptions {
            catalog,
            optimum: options.optimum,
            ledger: None,
        },
    ));
    if let Some(path) = &options.batches {
        write_batches(path, &replayed).map_err(|source| ReplayError::Batches {
            path: path.clone(),
            source,
        })?;
    }
    if replayed.rejected > 0 {
        let _ = writeln!(
            err,
            "{} request(s) were rejected by the daemon's checks (see the log)",
            replayed.rejected
        );
    }
    print(&replayed, options.format, out).map_err(ReplayError::Output)?;
    Ok(bad.len())
}

fn write_batches(path: &std::path::Path, replayed: &Replayed) -> io::Result<()> {
    let mut file = io::BufWriter::new(std::fs::File::create(path)?);
    for b in &replayed.batches {
        serde_json::to_writer(&mut file, b)?;
        file.write_all(b"\n")?;
    }
    file.flush()
}

/// Prints the monthly table (text) or `{"months": [...], "total": {...}}`.
pub fn print(replayed: &Replayed, format: Format, out: &mut impl Write) -> io::Result<()> {
    let total = &replayed.total;
    match format {
        Format::Json => {
            let value = serde_json::json!({ "months": replayed.months, "total": total });
            serde_json::to_writer_pretty(&mut *out, &value)?;
            writeln!(out)
        }
        Format::Text => {
            let blast = total.blast.is_some();
            let mut header = vec!["month", "requested", "billed", "wildcards"];
            if blast {
                header.push("blast");
            }
            header.extend([
                "invalidations",
                "delay_p50",
                "delay_p99",
                "held_at_end",
                "price_end",
            ]);
            if total.optimum.is_some() {
                header.extend([
                    "optimum_same_spend",
                    "optimum_paced",
                    "optimum_same_spend_ratio",
                    "optimum_paced_ratio",
                ]);
            }
            let rows: Vec<Vec<String>> = replayed
                .months
                .iter()
                .chain(std::iter::once(total))
                .map(|m| cells(m, blast))
                .collect();
            let widths: Vec<usize> = (0..header.len())
                .map(|i| {
                    rows.iter()
                        .map(|r| r[i].len())
                        .chain(std::iter::once(header[i].len()))
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: &[&str]| {
                cells
                    .iter()
                    .zip(&widths)
                    .enumerate()
                    .map(|(i, (c, w))| {
                        if i == 0 {
                            format!("{c:<w$}")
                        } else {
                            format!("{c:>w$}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            writeln!(out, "{}", line(&header))?;
            for r in &rows {
                let r: Vec<&str> = r.iter().map(String::as_str).collect();
                writeln!(out, "{}", line(&r))?;
            }
            Ok(())
        }
    }
}

fn cells(m: &MonthRow, blast: bool) -> Vec<String> {
    let mut c = vec![
        m.month.clone(),
        m.requested.to_string(),
        m.billed.to_string(),
        m.wildcards.to_string(),
    ];
    if blast {
        c.push(m.blast.unwrap_or(0).to_string());
    }
    c.extend([
        m.invalidations.to_string(),
        format!("{:.0}", m.delay_p50),
        format!("{:.0}", m.delay_p99),
        m.held_at_end.to_string(),
        price_text(m.price_end),
    ]);
    if let Some(o) = &m.optimum {
        let count = |n: Option<u64>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
        let ratio = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
        c.extend([
            count(o.optimum_same_spend),
            count(o.optimum_paced),
            ratio(o.optimum_same_spend_ratio),
            ratio(o.optimum_paced_ratio),
        ]);
    }
    c
}

/// A price to three significant figures (it ranges over orders of
/// magnitude: a fixed one decimal would print a low price as 0.0).
fn price_text(price: f64) -> String {
    if price >= 100.0 {
        format!("{price:.0}")
    } else if price >= 10.0 {
        format!("{price:.1}")
    } else if price >= 1.0 {
        format!("{price:.2}")
    } else {
        format!("{price:.3}")
    }
}

/// `cfpurge replay`'s options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The trace: one JSON object a line, {"t": seconds since the start
    /// or an RFC 3339 time, "paths": [...], "tags": [...],
    /// "distribution": "alias"}.
    trace: PathBuf,
    /// Configuration file (else $CFPURGE_CONFIG, else /etc/cfpurge/cfpurge.toml).
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// What the site serves, one path per line: every distribution
    /// plans with it, and the table counts the blast.
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Write one JSON line per CreateInvalidation to this file.
    #[arg(long)]
    batches: Option<PathBuf>,
    /// Also compute, per month, the least blast the same batches could
    /// have had at the same spend and within the budget's even pacing
    /// (needs --catalog).
    #[arg(long, requires = "catalog")]
    optimum: bool,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// `cfpurge replay`: the trace run through the core, a row per month on
/// stdout. Exit 1 when a line of the trace could not be read; a reader
/// that stops early ends it with 0.
pub fn main(args: Args) -> Result<u8, super::Failure> {
    let config = super::load_config(args.config.as_deref())?;
    let options = Options {
        trace: args.trace,
        catalog: args.catalog,
        batches: args.batches,
        optimum: args.optimum,
        format: args.format,
    };
    match run(
        &config,
        &options,
        &mut io::stdout().lock(),
        &mut io::stderr().lock(),
    ) {
        Ok(bad) => Ok(if bad > 0 { 1 } else { 0 }),
        Err(ReplayError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(super::Failure::runtime(e)),
    }
}
