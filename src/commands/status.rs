//! `cfpurge status`: reads a running daemon's `GET /v1/status` and prints it
//! as a table for people or as JSON for scripts.

use std::io::{self, Write};

use crate::status::age;
use crate::status::{Status, format_time};

use super::enqueue::{EnqueueError, endpoint, error_chain, http_client, short};

/// Where `cfpurge status` looks without `--url`: `[http] listen`'s default.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9470";

/// Output format of `cfpurge status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Why `cfpurge status` failed; every case exits 1 except a malformed URL
/// (2).
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the daemon at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("{url} answered {status}: {message}")]
    Http {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url} answered something that is not a status: {detail}")]
    Unreadable { url: String, detail: String },
    #[error("cannot write the status: {0}")]
    Output(#[source] io::Error),
}

impl StatusError {
    /// 2 for a bad `--url`, 1 otherwise.
    pub fn exit_status(&self) -> u8 {
        match self {
            StatusError::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Fetches `URL/v1/status` and writes it to `out` in `format`.
pub async fn run(url: &str, format: Format, out: &mut dyn Write) -> Result<(), StatusError> {
    let (endpoint, body) = fetch(url).await?;
    let unreadable = |e: serde_json::Error| StatusError::Unreadable {
        url: endpoint.clone(),
        detail: e.to_string(),
    };
    match format {
        Format::Json => {
            // As received, keys this build does not know included.
            let value: serde_json::Value = serde_json::from_str(&body).map_err(unreadable)?;
            serde_json::to_writer_pretty(&mut *out, &value)
                .map_err(io::Error::from)
                .and_then(|()| writeln!(out))
                .map_err(StatusError::Output)?;
        }
        Format::Text => {
            let status: Status = serde_json::from_str(&body).map_err(unreadable)?;
            write_text(&status, out).map_err(StatusError::Output)?;
        }
    }
    Ok(())
}

/// `GET URL/v1/status`: the endpoint asked and the body of a 200 answer.
pub async fn fetch(url: &str) -> Result<(String, String), StatusError> {
    let from_enqueue = |e: EnqueueError| match e {
        EnqueueError::Usage(m) => StatusError::Usage(m),
        other => StatusError::Unreachable {
            url: url.to_owned(),
            detail: other.to_string(),
        },
    };
    let endpoint = endpoint(url, "/v1/status").map_err(from_enqueue)?;
    let client = http_client(&endpoint).map_err(from_enqueue)?;
    let unreachable = |e: reqwest::Error| StatusError::Unreachable {
        url: endpoint.clone(),
        detail: error_chain(&e),
    };
    let response = client.get(&endpoint).send().await.map_err(unreachable)?;
    let status = response.status();
    let body = response.text().await.map_err(unreachable)?;
    if status != reqwest::StatusCode::OK {
        return Err(StatusError::Http {
            url: endpoint,
            status: status.as_u16(),
            message: short(&body),
        });
    }
    Ok((endpoint, body))
}

/// The status as a table, one line per distribution; then, for each
/// distribution whose paths wait or whose CloudFront calls failed, what
/// they wait for and the last error; then the budget and the queue.
pub fn write_text(status: &Status, out: &mut dyn Write) -> io::Result<()> {
    let header = [
        "DISTRIBUTION",
        "ID",
        "PENDING",
        "OLDEST",
        "IN-FLIGHT EXACT/WILDCARD",
        "LAST INVALIDATION",
    ];
    let rows: Vec<[String; 6]> = status
        .distributions
        .iter()
        .map(|(alias, d)| {
            let last = match &d.last_invalidation {
                Some(l) => format!(
                    "{} {} {} paths {}",
                    l.id,
                    l.status,
                    l.paths,
                    format_time(l.created_at)
                ),
                None => "-".to_owned(),
            };
            [
                alias.clone(),
                // A tenant by its tenant id: its distribution's id is
                // shared by every tenant of it.
                d.tenant_id.clone().unwrap_or_else(|| d.id.clone()),
                d.pending_paths.to_string(),
                age(d.oldest_pending_seconds),
                format!("{}/{}", d.inflight_exact, d.inflight_wildcard),
                last,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        text
    };
    match (status.mode.source.as_str(), status.mode.cloudfront.as_str()) {
        ("", _) | (_, "") => writeln!(out, "cfpurge {}", status.version)?,
        (source, cloudfront) => writeln!(
            out,
            "cfpurge {} (source {source}, cloudfront {cloudfront})",
            status.version
        )?,
    }
    writeln!(out, "{}", line(&header))?;
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        writeln!(out, "{}", line(&cells))?;
    }
    for (alias, d) in &status.distributions {
        if let Some(w) = &d.waiting {
            let until = match &w.until {
                Some(t) => format!(" until {t}"),
                None => String::new(),
            };
            writeln!(out, "{alias}: waiting for {}{until}: {}", w.on, w.detail)?;
        }
        if let Some(e) = d.last_error.as_ref().filter(|e| e.since_success > 0) {
            writeln!(
                out,
                "{alias}: CloudFront error {} on {} at {} ({} failed since the last success): {}",
                e.code,
                e.operation,
                format_time(e.at),
                e.since_success,
                e.message
            )?;
        }
    }
    // With several accounts, each has a budget of its own (a daemon of one
    // account sends none, and `budget` is its budget).
    let several = !crate::status::single_account(&status.accounts);
    if !several {
        writeln!(out, "budget {}", budget_text(&status.budget))?;
    }
    for (name, account) in status.accounts.iter().filter(|_| several) {
        let role = match &account.role_arn {
            Some(role) => format!(" (role {role})"),
            None => String::new(),
        };
        writeln!(
            out,
            "budget of account {name}{role} {}",
            budget_text(&account.budget)
        )?;
        if !account.not_ready.is_empty() {
            writeln!(
                out,
                "account {name}: not ready: {}",
                account.not_ready.join("; ")
            )?;
        }
    }
    let q = &status.queue;
    writeln!(
        out,
        "queue: visible {}, in flight {}, delayed {}, pending messages {}",
        q.visible, q.in_flight, q.delayed, q.pending_messages
    )?;
    for (alias, d) in &status.distributions {
        if let Some(v) = &d.verify {
            let last = v.last_stale.as_ref().map_or(String::new(), |l| {
                format!(
                    ", last stale {} (Age {} s) at {}",
                    l.path, l.age_seconds, l.at
                )
            });
            writeln!(
                out,
                "edge checks {alias}: fresh {}, stale {}, error {}, queued {}, purged again {}{last}",
                v.fresh, v.stale, v.error, v.queued, v.reinvalidated
            )?;
        }
        if let Some(w) = &d.warm {
            writeln!(
                out,
                "warming {alias}: ok {}, error {}, queued {}, not requested {}",
                w.ok, w.error, w.queued, w.not_requested
            )?;
        }
    }
    out.flush()
}

/// One budget as `cfpurge status` prints it: `MONTH: used N of LIMIT, ...`.
fn budget_text(b: &crate::status::BudgetStatus) -> String {
    let reserved = if b.reserved > 0 {
        format!(
            " ({} reserved on doubt: not known to be created)",
            b.reserved
        )
    } else {
        String::new()
    };
    format!(
        "{}: used {} of {}{reserved}, allowed now {}, policy {}",
        if b.month.is_empty() { "-" } else { &b.month },
        b.used,
        b.limit,
        b.allowed,
        b.policy
    )
}

/// `cfpurge status`'s options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The daemon's HTTP listener.
    #[arg(long, default_value = DEFAULT_URL)]
    url: String,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// `cfpurge status`: the daemon's status on stdout; a reader that stops
/// early ends it with 0.
pub fn main(args: Args) -> Result<u8, super::Failure> {
    let shown =
        super::current_thread()?.block_on(run(&args.url, args.format, &mut io::stdout().lock()));
    match shown {
        Ok(()) => Ok(0),
        Err(StatusError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(super::Failure {
            status: e.exit_status(),
            message: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::status::{DistributionStatus, LastInvalidation};

    #[test]
    fn with_several_accounts_text_has_each_accounts_budget_and_why_it_is_not_ready() {
        // As a daemon with [accounts] answers /v1/status.
        let json = r#"{"version": "0.1.0", "distributions": {},
            "budget": {"month": "2026-11", "limit": 1000, "used": 12, "allowed": 140, "policy": "hold"},
            "accounts": {
              "default": {"month": "2026-11", "limit": 1000, "used": 12, "allowed": 140,
                          "policy": "hold", "role_arn": null, "not_ready": []},
              "prod": {"month": "2026-11", "limit": 5000, "used": 345, "allowed": 700,
                       "policy": "hold", "role_arn": "arn:aws:iam::210987654321:role/cfpurge",
                       "not_ready": ["distribution:shop: the role could not be assumed"]}},
            "queue": {}}"#;
        let status: Status = serde_json::from_str(json).unwrap();
        let mut out = Vec::new();
        write_text(&status, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                "budget of account default 2026-11: used 12 of 1000, allowed now 140, policy hold\n\
                 budget of account prod (role arn:aws:iam::210987654321:role/cfpurge) 2026-11: \
                 used 345 of 5000, allowed now 700, policy hold\n\
                 account prod: not ready: distribution:shop: the role could not be assumed\n"
            ),
            "{text}"
        );
        assert!(!text.contains("\nbudget 2026-11"), "{text}");
    }

    #[test]
    fn text_has_a_line_per_distribution_then_budget_and_queue() {
        let mut status = Status {
            version: "0.1.0".into(),
            ..Status::default()
        };
        status.distributions.insert(
            "www".into(),
            DistributionStatus {
                id: "E2ABCDEF123456".into(),
                tenant_id: None,
                pending_paths: 4,
                oldest_pending_seconds: 75,
                inflight_exact: 12,
                inflight_wildcard: 1,
                last_invalidation: Some(LastInvalidation {
                    id: "I2J3".into(),
                    status: "InProgress".into(),
                    paths: 13,
                    created_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_532_400),
                }),
                catalog: None,
                ..DistributionStatus::default()
            },
        );
        status.distributions.insert(
            "api".into(),
            DistributionStatus {
                id: "EAPI".into(),
                ..DistributionStatus::default()
            },
        );
        status.budget.month = "2026-11".into();
        status.budget.limit = 1000;
        status.budget.used = 13;
        status.budget.allowed = 140;
        status.budget.policy = "coalesce".into();
        let mut out = Vec::new();
        write_text(&status, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "cfpurge 0.1.0");
        assert!(lines[1].starts_with("DISTRIBUTION  ID "), "{}", lines[1]);
        assert!(lines[2].starts_with("api  "), "{}", lines[2]);
        assert!(
            lines[2].ends_with(&format!("0/0{}-", " ".repeat(23))),
            "{}",
            lines[2]
        );
        assert!(lines[3].contains("1m15s"), "{}", lines[3]);
        assert!(lines[3].contains("12/1"), "{}", lines[3]);
        assert!(
            lines[3].ends_with("I2J3 InProgress 13 paths 2026-11-24T15:00:00Z"),
            "{}",
            lines[3]
        );
        assert_eq!(
            lines[4],
            "budget 2026-11: used 13 of 1000, allowed now 140, policy coalesce"
        );
        assert_eq!(
            lines[5],
            "queue: visible 0, in flight 0, delayed 0, pending messages 0"
        );
        assert_eq!(lines.len(), 6, "no edge lines without verify or warm");
    }

    #[test]
    fn text_shows_the_edge_of_a_distribution_that_has_one() {
        let mut status = Status::default();
        status.distributions.insert(
            "www".into(),
            DistributionStatus {
                verify: Some(crate::status::VerifyStatus {
                    fresh: 9,
                    stale: 1,
                    error: 2,
                    queued: 0,
                    not_requested: 0,
                    reinvalidated: 1,
                    last_stale: Some(crate::status::StalePath {
                        path: "/a.html".into(),
                        invalidation: "I1".into(),
                        age_seconds: 700,
                        at: "2026-11-24T15:00:00Z".into(),
                    }),
                }),
                warm: Some(crate::status::WarmStatus {
                    ok: 40,
                    error: 0,
                    queued: 3,
                    not_requested: 0,
                }),
                ..DistributionStatus::default()
            },
        );
        let mut out = Vec::new();
        write_text(&status, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            &lines[lines.len() - 2..],
            [
                "edge checks www: fresh 9, stale 1, error 2, queued 0, purged again 1, \
                 last stale /a.html (Age 700 s) at 2026-11-24T15:00:00Z",
                "warming www: ok 40, error 0, queued 3, not requested 0",
            ]
        );
    }

    #[test]
    fn a_stuck_distribution_gets_its_wait_and_its_error_on_lines_of_their_own() {
        let mut status = Status {
            version: "0.1.0".into(),
            ..Status::default()
        };
        status.mode.source = "local".into();
        status.mode.cloudfront = "aws".into();
        let error = crate::status::CallError {
            code: "server_error".into(),
            operation: "CreateInvalidation".into(),
            message: "cloudfront unavailable: connection refused".into(),
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_532_400),
            since_success: 3,
        };
        status.distributions.insert(
            "www".into(),
            DistributionStatus {
                id: "EWWW".into(),
                pending_paths: 2,
                waiting: Some(crate::status::Waiting {
                    on: "retry".into(),
                    until: Some("2026-11-24T15:00:30Z".into()),
                    detail: "CreateInvalidation failed (server_error)".into(),
                }),
                last_error: Some(error.clone()),
                ..DistributionStatus::default()
            },
        );
        // Recovered: its past error is not a line.
        status.distributions.insert(
            "img".into(),
            DistributionStatus {
                id: "EIMG".into(),
                last_error: Some(crate::status::CallError {
                    since_success: 0,
                    ..error
                }),
                ..DistributionStatus::default()
            },
        );
        status.budget.month = "2026-11".into();
        status.budget.limit = 1000;
        status.budget.used = 2;
        status.budget.reserved = 2;
        status.budget.allowed = 140;
        status.budget.policy = "coalesce".into();
        let mut out = Vec::new();
        write_text(&status, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "cfpurge 0.1.0 (source local, cloudfront aws)");
        assert_eq!(
            lines[4],
            "www: waiting for retry until 2026-11-24T15:00:30Z: CreateInvalidation failed \
             (server_error)"
        );
        assert_eq!(
            lines[5],
            "www: CloudFront error server_error on CreateInvalidation at 2026-11-24T15:00:00Z \
             (3 failed since the last success): cloudfront unavailable: connection refused"
        );
        assert_eq!(
            lines[6],
            "budget 2026-11: used 2 of 1000 (2 reserved on doubt: not known to be created), \
             allowed now 140, policy coalesce"
        );
        assert!(!text.contains("img:"), "{text}");
    }

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(age(0), "0s");
        assert_eq!(age(59), "59s");
        assert_eq!(age(185), "3m05s");
        assert_eq!(age(7620), "2h07m");
    }
}
