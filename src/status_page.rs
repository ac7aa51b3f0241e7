//! The read-only status page at `GET /`: the `/v1/status` snapshot as one
//! server-rendered HTML page for a person to open when something seems
//! stuck. The mode (SQS or local queue, AWS or simulated CloudFront) in
//! the header. Per distribution the pending paths and their age, what they
//! wait for, the last CloudFront error, the paths in flight against the
//! limits, the last invalidation; the month's budget with the pacing
//! allowance marked and the reservations kept on doubt apart; the queue.
//!
//! [`render`] is a pure function of the snapshot and the time; every value
//! it prints goes through [`escape`]. The page loads nothing else (inline
//! CSS, no script: a meta refresh reloads it), and its response forbids
//! loading anything else, so it works on a host with no way out.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::status::{Status, age, format_time};

/// How often the page reloads itself, in seconds.
pub const REFRESH_SECONDS: u32 = 5;

/// The response's content security policy: inline styles, nothing loaded.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// `text` with the five characters that matter in HTML text and quoted
/// attribute values replaced by references.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

// Sections are at least 520 px wide (or the whole width when narrower): a
// distribution's last-invalidation row (id, status, paths, a timestamp)
// fits on one line, so 1,280 px shows two columns rather than three squeezed
// ones with broken timestamps. Table cells never wrap; a section too narrow
// for its table scrolls.
const STYLE: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}\
header{background:#1d2330;color:#fff;padding:12px 24px;display:flex;justify-content:space-between;align-items:baseline}\
header h1{font-size:18px;margin:0}header span{color:#b8c0cc;font-size:12px}\
main{padding:16px 24px;display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,520px),1fr));gap:16px}\
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:14px 16px;min-width:0;overflow-x:auto}\
h2{font-size:15px;margin:0 0 10px}h2 small{color:#6b7585;font-weight:normal}\
.figures{display:flex;flex-wrap:wrap;gap:8px 24px;margin-bottom:10px}.figure b{display:block;font-size:22px}\
.figure span,.label{color:#6b7585;font-size:12px}\
.bar{position:relative;height:12px;background:#e6e9ee;border-radius:3px;margin:3px 0 10px}\
.fill{position:absolute;left:0;top:0;bottom:0;background:#3b82f6;border-radius:3px}\
.fill.high{background:#e08a00}.fill.full{background:#d1343a}\
.mark{position:absolute;top:-4px;bottom:-4px;width:2px;background:#1d2330}\
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:3px 6px 3px 0;font-size:13px}td{white-space:nowrap}\
th{color:#6b7585;font-weight:normal}code{font-size:12px}\
.st{padding:1px 6px;border-radius:3px;font-size:12px}.InProgress{background:#fff1d6}.Completed{background:#dcf5e3}.stale{background:#fddede}\
header .mode{background:#3a4254;color:#fff;padding:1px 6px;border-radius:3px;margin-left:8px;font-size:12px;font-weight:normal}\
header .mode.test{background:#ffd98a;color:#1d2330}\
.note{border-left:4px solid #6b7585;background:#f4f5f7;padding:6px 10px;margin:0 0 10px;font-size:13px;overflow-wrap:anywhere}\
.note.error{border-color:#d1343a;background:#fdecec}.note.wait{border-color:#e08a00;background:#fff7e6}\
.note b{font-weight:600}.nw{white-space:nowrap}.note code{display:block;margin-top:2px;white-space:normal}";

/// The page for `status` as of `now`, reloading every `refresh_seconds`.
pub fn render(status: &Status, now: SystemTime, refresh_seconds: u32) -> String {
    let mut html = String::with_capacity(8 * 1024);
    // Writing to a String cannot fail.
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{refresh_seconds}\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>cfpurge status</title><style>{STYLE}</style></head><body>\
         <header><h1>cfpurge {version}{mode}</h1>\
         <span>as of {now} · refreshes every {refresh_seconds} s · \
         <a href=\"/v1/status\" style=\"color:#b8c0cc\">JSON</a></span></header><main>",
        version = escape(&status.version),
        mode = mode_badges(status),
        now = escape(&format_time(now)),
    );
    if status.distributions.is_empty() {
        html.push_str("<section><h2>No distributions</h2></section>");
    }
    for (alias, d) in &status.distributions {
        let _ = write!(
            html,
            "<section><h2>{alias} <small>{id}</small></h2>\
             <div class=\"figures\">\
             <div class=\"figure\"><b>{pending}</b><span>pending paths</span></div>\
             <div class=\"figure\"><b>{oldest}</b><span>oldest pending</span></div></div>",
            alias = escape(alias),
            id = escape(&match &d.tenant_id {
                Some(tenant) => format!("{tenant} of {}", d.id),
                None => d.id.clone(),
            }),
            pending = d.pending_paths,
            oldest = escape(&age(d.oldest_pending_seconds)),
        );
        if let Some(w) = &d.waiting {
            // The batching window and a call under way are the daemon at
            // work, not a sign of trouble: no warning colour.
            let class = match w.on.as_str() {
                "quiet_window" | "call" | "reservation" => "note",
                _ => "note wait",
            };
            let _ = write!(
                html,
                "<p class=\"{class}\"><b>Waiting for: {on}</b>{until}<br>{detail}</p>",
                on = escape(&w.on),
                until = match &w.until {
                    Some(t) => format!(" until <span class=\"nw\">{}</span>", escape(t)),
                    None => String::new(),
                },
                detail = escape(&w.detail),
            );
        }
        if let Some(e) = &d.last_error {
            let (class, since) = if e.since_success > 0 {
                (
                    "note error",
                    format!(
                        "{} failed call{} since the last success",
                        e.since_success,
                        if e.since_success == 1 { "" } else { "s" }
                    ),
                )
            } else {
                ("note", "calls have gone through since".to_owned())
            };
            let _ = write!(
                html,
                "<p class=\"{class}\"><b>Last CloudFront error: {code}</b> on {operation} at \
                 <span class=\"nw\">{at}</span>; {since}<code>{message}</code></p>",
                code = escape(&e.code),
                operation = escape(&e.operation),
                at = escape(&format_time(e.at)),
                since = escape(&since),
                message = escape(&e.message),
            );
        }
        bar(
            &mut html,
            "exact paths in flight",
            d.inflight_exact,
            d.max_inflight_exact,
            None,
        );
        bar(
            &mut html,
            "wildcard paths in flight",
            d.inflight_wildcard,
            d.max_inflight_wildcard,
            None,
        );
        match &d.last_invalidation {
            Some(last) => {
                let _ = write!(
                    html,
                    "<table><tr><th>last invalidation</th><th>status</th><th>paths</th>\
                     <th>created</th></tr><tr><td><code>{id}</code></td>\
                     <td><span class=\"st {status}\">{status}</span></td><td>{paths}</td>\
                     <td>{created}</td></tr></table>",
                    id = escape(&last.id),
                    status = escape(&last.status),
                    paths = last.paths,
                    created = escape(&format_time(last.created_at)),
                );
            }
            None => html.push_str("<p class=\"label\">no invalidation created yet</p>"),
        }
        edge(&mut html, d);
        html.push_str("</section>");
    }

    // With `[accounts]`, each account's budget (AWS bills each on its own);
    // without, the one budget as it always was.
    let several = status
        .accounts
        .keys()
        .any(|a| a != crate::config::DEFAULT_ACCOUNT);
    if several {
        for (account, a) in &status.accounts {
            budget_section(&mut html, &a.budget, Some((account, a)));
        }
    } else {
        budget_section(&mut html, &status.budget, None);
    }

    let q = &status.queue;
    let _ = write!(
        html,
        "<section><h2>Queue</h2><table>\
         <tr><th>visible</th><th>in flight</th><th>delayed</th><th>held by cfpurge</th></tr>\
         <tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table></section>",
        q.visible, q.in_flight, q.delayed, q.pending_messages
    );
    html.push_str("</main></body></html>\n");
    html
}

/// One budget's section; `account` names it, with its role and what keeps
/// its distributions from being ready.
fn budget_section(
    html: &mut String,
    b: &crate::status::BudgetStatus,
    account: Option<(&String, &crate::status::AccountStatus)>,
) {
    let month = if b.month.is_empty() { "-" } else { &b.month };
    let title = match account {
        Some((name, _)) => format!("Budget of account {}", escape(name)),
        None => "Budget".to_owned(),
    };
    let _ = write!(
        html,
        "<section><h2>{title} <small>{month}, policy {policy}</small></h2>\
         <div class=\"figures\">\
         <div class=\"figure\"><b>{used}</b><span>paths used</span></div>\
         <div class=\"figure\"><b>{reserved}</b><span>of them reserved on doubt</span></div>\
         <div class=\"figure\"><b>{pace}</b><span>even pace by now</span></div>\
         <div class=\"figure\"><b>{allowed}</b><span>allowed by now</span></div>\
         <div class=\"figure\"><b>{limit}</b><span>monthly limit</span></div>\
         <div class=\"figure\"><b>{price}</b><span>price (blast per billed path)</span></div></div>",
        month = escape(month),
        policy = escape(&b.policy),
        used = b.used,
        reserved = b.reserved,
        pace = b.pace,
        allowed = b.allowed,
        limit = b.limit,
        price = price_text(b.price),
    );
    bar(
        html,
        "used this month; the mark is what the pacing allows by now",
        b.used,
        b.limit,
        Some(b.allowed),
    );
    if b.reserved > 0 {
        let _ = write!(
            html,
            "<p class=\"note wait\">{reserved} of the {used} paths used are reserved for \
             CreateInvalidation calls not known to have been created (under way, or their \
             answer was lost): counted as spent until CloudFront confirms them or a scan of \
             the month shows they were never made.</p>",
            reserved = b.reserved,
            used = b.used,
        );
    }
    if let Some((_, a)) = account {
        let how = match &a.role_arn {
            Some(role) => format!("role <code>{}</code>", escape(role)),
            None => "the default credentials".to_owned(),
        };
        let _ = write!(html, "<p class=\"label\">reached with {how}</p>");
        for reason in &a.not_ready {
            let _ = write!(html, "<p class=\"label\">not ready: {}</p>", escape(reason));
        }
    }
    html.push_str("</section>");
}

/// The mode as badges after the version: where requests come from and
/// where they go, so a local run or a rehearsal is never taken for the
/// real thing. Nothing for a status without a mode (an older daemon).
fn mode_badges(status: &Status) -> String {
    let badge = |text: &str, real: bool| {
        let class = if real { "mode" } else { "mode test" };
        format!("<span class=\"{class}\">{}</span>", escape(text))
    };
    let source = match status.mode.source.as_str() {
        "" => return String::new(),
        "sqs" => badge("SQS queue", true),
        "local" => badge("local queue", false),
        other => badge(&format!("{other} queue"), false),
    };
    let cloudfront = match status.mode.cloudfront.as_str() {
        "aws" => badge("AWS CloudFront", true),
        "simulate" => badge("simulated CloudFront", false),
        other => badge(&format!("CloudFront {other}"), false),
    };
    source + &cloudfront
}

/// The edge checks and warming of a distribution, when configured.
fn edge(html: &mut String, d: &crate::status::DistributionStatus) {
    if let Some(v) = &d.verify {
        let _ = write!(
            html,
            "<table><tr><th>edge checks</th><th>fresh</th><th>stale</th><th>error</th>\
             <th>queued</th><th>purged again</th></tr><tr><td>after Completed</td>\
             <td>{}</td><td><span class=\"{}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
            v.fresh,
            if v.stale > 0 { "st stale" } else { "" },
            v.stale,
            v.error,
            v.queued,
            v.reinvalidated,
        );
        if let Some(last) = &v.last_stale {
            let _ = write!(
                html,
                "<p class=\"label\">last stale: <code>{path}</code> (Age {age} s, \
                 invalidation <code>{id}</code>) at {at}</p>",
                path = escape(&last.path),
                age = last.age_seconds,
                id = escape(&last.invalidation),
                at = escape(&last.at),
            );
        }
    }
    if let Some(w) = &d.warm {
        let _ = write!(
            html,
            "<table><tr><th>warming</th><th>ok</th><th>error</th><th>queued</th>\
             <th>not requested</th></tr><tr><td>after Completed</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr></table>",
            w.ok, w.error, w.queued, w.not_requested,
        );
    }
}

/// A price as an operator reads it: three significant figures, whole
/// numbers from 100 up.
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

/// A labelled bar of `value` out of `limit`, with an optional mark; a limit
/// of 0 (unknown) draws an empty bar.
fn bar(html: &mut String, label: &str, value: u64, limit: u64, mark: Option<u64>) {
    let share = |v: u64| {
        if limit == 0 {
            0.0
        } else {
            (v as f64 / limit as f64 * 100.0).min(100.0)
        }
    };
    let fill = share(value);
    let class = if limit > 0 && value >= limit {
        "fill full"
    } else if fill >= 80.0 {
        "fill high"
    } else {
        "fill"
    };
    let shown_limit = if limit == 0 {
        "?".to_owned()
    } else {
        limit.to_string()
    };
    let _ = write!(
        html,
        "<div class=\"label\">{label}: {value} / {shown_limit}</div>\
         <div class=\"bar\"><div class=\"{class}\" style=\"width:{fill:.1}%\"></div>",
        label = escape(label),
    );
    if let Some(mark) = mark {
        let _ = write!(
            html,
            "<div class=\"mark\" style=\"left:{:.1}%\" title=\"{mark}\"></div>",
            share(mark)
        );
    }
    html.push_str("</div>");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::status::{BudgetStatus, DistributionStatus, LastInvalidation, QueueStatus};

    /// 2026-11-24T15:00:00Z
    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_532_400)
    }

    fn sample() -> Status {
        let mut status = Status {
            version: "0.1.0".into(),
            budget: BudgetStatus {
                month: "2026-11".into(),
                limit: 1000,
                used: 250,
                allowed: 600,
                policy: "coalesce".into(),
                pace: 500,
                price: 12.345,
                reserved: 0,
            },
            queue: QueueStatus {
                visible: 4,
                in_flight: 2,
                delayed: 0,
                pending_messages: 2,
            },
            ..Status::default()
        };
        status.distributions.insert(
            "www".into(),
            DistributionStatus {
                id: "E2ABCDEF123456".into(),
                tenant_id: None,
                account: None,
                pending_paths: 17,
                oldest_pending_seconds: 75,
                inflight_exact: 1500,
                inflight_wildcard: 15,
                max_inflight_exact: 3000,
                max_inflight_wildcard: 15,
                last_invalidation: Some(LastInvalidation {
                    id: "I2J3EXAMPLE".into(),
                    status: "InProgress".into(),
                    paths: 13,
                    created_at: at(),
                }),
                catalog: None,
                last_error: None,
                waiting: None,
                verify: Some(crate::status::VerifyStatus {
                    fresh: 41,
                    stale: 2,
                    error: 1,
                    queued: 3,
                    not_requested: 0,
                    reinvalidated: 1,
                    last_stale: Some(crate::status::StalePath {
                        path: "/a<b>.html".into(),
                        invalidation: "I2J3EXAMPLE".into(),
                        age_seconds: 4000,
                        at: "2026-11-24T14:59:00Z".into(),
                    }),
                }),
                warm: Some(crate::status::WarmStatus {
                    ok: 97,
                    error: 3,
                    queued: 0,
                    not_requested: 5,
                }),
            },
        );
        status
    }

    #[test]
    fn shows_every_figure_of_the_snapshot() {
        let html = render(&sample(), at(), 5);
        for text in [
            "<meta http-equiv=\"refresh\" content=\"5\">",
            "cfpurge 0.1.0",
            "as of 2026-11-24T15:00:00Z",
            "<h2>www <small>E2ABCDEF123456</small></h2>",
            "<b>17</b><span>pending paths</span>",
            "<b>1m15s</b><span>oldest pending</span>",
            "exact paths in flight: 1500 / 3000",
            "wildcard paths in flight: 15 / 15",
            "<code>I2J3EXAMPLE</code>",
            "<span class=\"st InProgress\">InProgress</span>",
            "<td>13</td>",
            "2026-11, policy coalesce",
            "<b>250</b><span>paths used</span>",
            "<b>600</b><span>allowed by now</span>",
            "<b>1000</b><span>monthly limit</span>",
            "<b>500</b><span>even pace by now</span>",
            "<b>12.3</b><span>price (blast per billed path)</span>",
            "<td>4</td><td>2</td><td>0</td><td>2</td>",
            "<td>after Completed</td><td>41</td><td><span class=\"st stale\">2</span></td><td>1</td><td>3</td><td>1</td>",
            "last stale: <code>/a&lt;b&gt;.html</code> (Age 4000 s, invalidation <code>I2J3EXAMPLE</code>) at 2026-11-24T14:59:00Z",
            "<td>after Completed</td><td>97</td><td>3</td><td>0</td><td>5</td>",
        ] {
            assert!(html.contains(text), "{text:?} missing from {html}");
        }
    }

    #[test]
    fn bars_are_scaled_to_their_limit_and_the_budget_marks_the_allowance() {
        let html = render(&sample(), at(), 5);
        // Half the exact limit; the wildcard limit reached.
        assert!(
            html.contains("<div class=\"fill\" style=\"width:50.0%\">"),
            "{html}"
        );
        assert!(
            html.contains("<div class=\"fill full\" style=\"width:100.0%\">"),
            "{html}"
        );
        // Budget: 250 of 1000 used, the pacing allows 600.
        assert!(
            html.contains("<div class=\"fill\" style=\"width:25.0%\">"),
            "{html}"
        );
        assert!(
            html.contains("<div class=\"mark\" style=\"left:60.0%\" title=\"600\">"),
            "{html}"
        );
    }

    #[test]
    fn with_several_accounts_each_budget_has_its_section_with_its_role_and_reasons() {
        use crate::status::AccountStatus;
        let mut status = sample();
        let html = render(&status, at(), 5);
        // One account: the one budget, as without accounts.
        assert!(html.contains("<h2>Budget <small>"), "{html}");
        for (name, used, role, reason) in [
            ("default", 12, None, None),
            (
                "prod",
                34,
                Some("arn:aws:iam::210987654321:role/cfpurge"),
                Some("distribution:shop: account prod: the role <x> could not be assumed"),
            ),
        ] {
            status.accounts.insert(
                name.to_owned(),
                AccountStatus {
                    budget: BudgetStatus {
                        month: "2026-11".into(),
                        limit: 1000,
                        used,
                        ..BudgetStatus::default()
                    },
                    role_arn: role.map(str::to_owned),
                    not_ready: reason.map(str::to_owned).into_iter().collect(),
                    components: Vec::new(),
                },
            );
        }
        let html = render(&status, at(), 5);
        assert!(!html.contains("<h2>Budget <small>"), "{html}");
        assert!(
            html.contains("<h2>Budget of account default <small>2026-11"),
            "{html}"
        );
        assert!(
            html.contains("<h2>Budget of account prod <small>2026-11"),
            "{html}"
        );
        assert!(html.contains("<b>34</b><span>paths used</span>"), "{html}");
        assert!(
            html.contains("reached with role <code>arn:aws:iam::210987654321:role/cfpurge</code>"),
            "{html}"
        );
        assert!(
            html.contains("reached with the default credentials"),
            "{html}"
        );
        // The reason is escaped like everything else.
        assert!(
            html.contains("not ready: distribution:shop: account prod: the role &lt;x&gt; could not be assumed"),
            "{html}"
        );
    }

    #[test]
    fn an_unknown_limit_draws_an_empty_bar() {
        let mut status = sample();
        let d = status.distributions.get_mut("www").unwrap();
        d.max_inflight_exact = 0;
        let html = render(&status, at(), 5);
        assert!(html.contains("exact paths in flight: 1500 / ?"), "{html}");
        assert!(html.contains("style=\"width:0.0%\""), "{html}");
    }

    #[test]
    fn before_the_first_invalidation_it_says_so() {
        let mut status = sample();
        status
            .distributions
            .get_mut("www")
            .unwrap()
            .last_invalidation = None;
        let html = render(&status, at(), 5);
        assert!(html.contains("no invalidation created yet"), "{html}");
    }

    fn stuck() -> Status {
        let mut status = sample();
        status.mode = crate::status::ModeStatus {
            source: "sqs".into(),
            cloudfront: "simulate".into(),
        };
        status.budget.reserved = 3;
        let d = status.distributions.get_mut("www").unwrap();
        d.waiting = Some(crate::status::Waiting {
            on: "retry".into(),
            until: Some("2026-11-24T15:00:30Z".into()),
            detail: "CreateInvalidation failed (timeout)".into(),
        });
        d.last_error = Some(crate::status::CallError {
            code: "timeout".into(),
            operation: "CreateInvalidation".into(),
            message: "cloudfront call timed out: no answer in 30 s".into(),
            at: at(),
            since_success: 4,
        });
        status
    }

    #[test]
    fn a_stuck_distribution_says_what_waits_and_why() {
        let html = render(&stuck(), at(), 5);
        for text in [
            "<span class=\"mode\">SQS queue</span>",
            "<span class=\"mode test\">simulated CloudFront</span>",
            "<p class=\"note wait\"><b>Waiting for: retry</b> until \
             <span class=\"nw\">2026-11-24T15:00:30Z</span><br>\
             CreateInvalidation failed (timeout)</p>",
            "<p class=\"note error\"><b>Last CloudFront error: timeout</b> on \
             CreateInvalidation at <span class=\"nw\">2026-11-24T15:00:00Z</span>; 4 failed \
             calls since the last \
             success<code>cloudfront call timed out: no answer in 30 s</code></p>",
            "<b>3</b><span>of them reserved on doubt</span>",
            "3 of the 250 paths used are reserved",
        ] {
            assert!(html.contains(text), "{text:?} missing from {html}");
        }
        // The batching window is no warning.
        let mut status = stuck();
        let d = status.distributions.get_mut("www").unwrap();
        d.waiting.as_mut().unwrap().on = "quiet_window".into();
        let html = render(&status, at(), 5);
        assert!(
            html.contains("<p class=\"note\"><b>Waiting for: quiet_window</b>"),
            "{html}"
        );
        // Recovered: the error stays, marked as past.
        let mut status = stuck();
        let d = status.distributions.get_mut("www").unwrap();
        d.last_error.as_mut().unwrap().since_success = 0;
        d.waiting = None;
        status.budget.reserved = 0;
        let html = render(&status, at(), 5);
        assert!(
            html.contains("<p class=\"note\"><b>Last CloudFront error: timeout</b>"),
            "{html}"
        );
        assert!(html.contains("calls have gone through since"), "{html}");
        assert!(!html.contains("Waiting for"), "{html}");
        assert!(!html.contains("paths used are reserved"), "{html}");
        // A status without a mode (an older daemon) shows no badge.
        assert!(!render(&sample(), at(), 5).contains("class=\"mode"));
    }

    #[test]
    fn every_value_is_escaped() {
        let evil = "<i>&\"'";
        let mut status = sample();
        status.version = evil.into();
        status.budget.month = evil.into();
        status.budget.policy = evil.into();
        let mut d = status.distributions.remove("www").unwrap();
        d.id = evil.into();
        let last = d.last_invalidation.as_mut().unwrap();
        last.id = evil.into();
        last.status = evil.into();
        d.waiting = Some(crate::status::Waiting {
            on: evil.into(),
            until: Some(evil.into()),
            detail: evil.into(),
        });
        d.last_error = Some(crate::status::CallError {
            code: evil.into(),
            operation: evil.into(),
            message: evil.into(),
            at: at(),
            since_success: 1,
        });
        status.distributions.insert(evil.into(), d);
        status.mode.source = evil.into();
        status.mode.cloudfront = evil.into();
        let html = render(&status, at(), 5);
        assert!(!html.contains("<i>"), "{html}");
        assert!(!html.contains("&\""), "{html}");
        // version, alias, id, invalidation id, status twice, month, policy;
        // the wait's three and the error's three; the two modes.
        assert_eq!(
            html.matches("&lt;i&gt;&amp;&quot;&#39;").count(),
            16,
            "{html}"
        );
    }

    #[test]
    fn escape_replaces_the_html_specials_only() {
        assert_eq!(escape("a<b>&\"c'd é"), "a&lt;b&gt;&amp;&quot;c&#39;d é");
    }
}
