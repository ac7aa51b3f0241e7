//! The operations files agree with the code: `config/iam-policy.json` allows
//! exactly the AWS operations the code calls, and `config/alerts.yml` and the
//! Grafana dashboard (`deploy/grafana/cfpurge.json`) read only metrics the
//! daemon exports. (`scripts/check-ops` parses the dashboard's queries with
//! promtool.)

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use prometheus::proto::MetricType;
use serde_json::Value;

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// SQS operations, as the SDK client's method names, and the IAM action
/// that authorizes each. A batch call is authorized by its single action.
/// An operation the code starts calling must be added here (and to the
/// policy): the scan below fails on any it does not know.
const SQS_OPERATIONS: &[(&str, &str)] = &[
    ("change_message_visibility", "sqs:ChangeMessageVisibility"),
    (
        "change_message_visibility_batch",
        "sqs:ChangeMessageVisibility",
    ),
    ("delete_message", "sqs:DeleteMessage"),
    ("delete_message_batch", "sqs:DeleteMessage"),
    ("get_queue_attributes", "sqs:GetQueueAttributes"),
    ("get_queue_url", "sqs:GetQueueUrl"),
    ("receive_message", "sqs:ReceiveMessage"),
    ("send_message", "sqs:SendMessage"),
    ("send_message_batch", "sqs:SendMessage"),
];

/// CloudFront operations and their IAM actions, as [`SQS_OPERATIONS`].
const CLOUDFRONT_OPERATIONS: &[(&str, &str)] = &[
    ("create_invalidation", "cloudfront:CreateInvalidation"),
    ("get_distribution", "cloudfront:GetDistribution"),
    ("get_invalidation", "cloudfront:GetInvalidation"),
    ("list_invalidations", "cloudfront:ListInvalidations"),
    (
        "create_invalidation_for_distribution_tenant",
        "cloudfront:CreateInvalidationForDistributionTenant",
    ),
    (
        "get_invalidation_for_distribution_tenant",
        "cloudfront:GetInvalidationForDistributionTenant",
    ),
    (
        "list_invalidations_for_distribution_tenant",
        "cloudfront:ListInvalidationsForDistributionTenant",
    ),
];

/// S3's operations (listing the buckets of `catalog = "s3"`).
const S3_OPERATIONS: &[(&str, &str)] = &[
    ("list_objects_v2", "s3:ListBucket"),
    ("get_object", "s3:GetObject"),
];

/// DynamoDB operations and their IAM actions, as [`SQS_OPERATIONS`]. A
/// TransactWriteItems is authorised item by item: its condition check needs
/// `ConditionCheckItem` (and its put `PutItem`, needed anyway).
const DYNAMODB_OPERATIONS: &[(&str, &str)] = &[
    ("delete_item", "dynamodb:DeleteItem"),
    ("get_item", "dynamodb:GetItem"),
    ("put_item", "dynamodb:PutItem"),
    ("transact_write_items", "dynamodb:ConditionCheckItem"),
    ("update_item", "dynamodb:UpdateItem"),
];

/// Methods of an SDK client that are not AWS operations.
const CLIENT_METHODS: &[&str] = &["clone", "config"];

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of `text` without its unit-test module (which clippy keeps at
/// the end of the file), line comments, and all white space, so that a call
/// split over lines (`self.client\n    .send_message()`) reads as one.
fn compact_code(text: &str) -> String {
    let mut code = text;
    let mut from = 0;
    while let Some(at) = code[from..].find("#[cfg(test)]") {
        let at = from + at;
        let rest = code[at + "#[cfg(test)]".len()..].trim_start();
        if rest.starts_with("mod ") {
            code = &code[..at];
            break;
        }
        from = at + 1;
    }
    code.lines()
        .map(|line| line.find("//").map_or(line, |i| &line[..i]))
        .flat_map(str::chars)
        .filter(|c| !c.is_whitespace())
        .collect()
}

/// The method names called as `<...client>.<name>()` in `code` (compacted):
/// the SDK's fluent operations take no arguments, unlike an HTTP client's
/// `client.get(url)`, which is left out.
fn client_calls(code: &str) -> Vec<String> {
    let mut calls = Vec::new();
    for (at, _) in code.match_indices("client.") {
        let rest = &code[at + "client.".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && rest[name.len()..].starts_with("()") {
            calls.push(name);
        }
    }
    calls
}

/// The IAM actions the code needs, with where each operation is called.
/// Panics on a call of an operation that neither table knows in a file
/// that uses an SDK client.
fn required_actions() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&repo_file("src"), &mut files);
    files.sort();
    let mut needed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let mut tables: Vec<&[(&str, &str)]> = Vec::new();
        if text.contains("aws_sdk_sqs") {
            tables.push(SQS_OPERATIONS);
        }
        if text.contains("aws_sdk_cloudfront") {
            tables.push(CLOUDFRONT_OPERATIONS);
        }
        if text.contains("aws_sdk_s3") {
            tables.push(S3_OPERATIONS);
        }
        if text.contains("aws_sdk_dynamodb") {
            tables.push(DYNAMODB_OPERATIONS);
        }
        if tables.is_empty() {
            continue;
        }
        let shown = file
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap_or(&file)
            .display()
            .to_string();
        for call in client_calls(&compact_code(&text)) {
            if CLIENT_METHODS.contains(&call.as_str()) {
                continue;
            }
            let action = tables
                .iter()
                .flat_map(|table| table.iter())
                .find(|(operation, _)| *operation == call)
                .map(|(_, action)| *action)
                .unwrap_or_else(|| {
                    panic!(
                        "{shown} calls the SDK operation `{call}()`, unknown to this test: \
                         add it with its IAM action to the table here and to \
                         config/iam-policy.json"
                    )
                });
            needed
                .entry(action.to_owned())
                .or_default()
                .insert(format!("{shown}: {call}()"));
        }
    }
    needed
}

/// A policy element that may be a string or an array of strings.
fn strings(value: &Value, what: &str) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .unwrap_or_else(|| panic!("{what}: {item} is not a string"))
                    .to_owned()
            })
            .collect(),
        other => panic!("{what}: {other} is neither a string nor an array"),
    }
}

/// The policy's statements as (sid, actions, resources), after checking
/// that each only allows, names its actions and resources without
/// wildcards, and puts each service's actions on that service's ARNs.
fn policy_statements() -> Vec<(String, Vec<String>, Vec<String>)> {
    let text = fs::read_to_string(repo_file("config/iam-policy.json")).unwrap();
    let policy: Value = serde_json::from_str(&text).expect("config/iam-policy.json is JSON");
    assert_eq!(policy["Version"], "2012-10-17");
    let statements = policy["Statement"]
        .as_array()
        .expect("Statement is an array");
    assert!(!statements.is_empty());
    statements
        .iter()
        .enumerate()
        .map(|(i, statement)| {
            let sid = statement["Sid"]
                .as_str()
                .map_or_else(|| format!("statement {i}"), str::to_owned);
            assert_eq!(statement["Effect"], "Allow", "{sid}");
            for key in ["NotAction", "NotResource", "Principal", "NotPrincipal"] {
                assert!(statement.get(key).is_none(), "{sid}: {key} is not expected");
            }
            let actions = strings(&statement["Action"], &sid);
            let resources = strings(&statement["Resource"], &sid);
            assert!(!actions.is_empty() && !resources.is_empty(), "{sid}");
            for action in &actions {
                assert!(!action.contains('*'), "{sid}: wildcard action {action}");
                let service = action.split(':').next().unwrap();
                let prefix = match service {
                    "sqs" => "arn:aws:sqs:REGION:ACCOUNT_ID:",
                    // CloudFront is global: its ARNs have no region. A
                    // tenant's calls are authorised on the tenant.
                    "cloudfront" if action.ends_with("ForDistributionTenant") => {
                        "arn:aws:cloudfront::ACCOUNT_ID:distribution-tenant/"
                    }
                    "cloudfront" => "arn:aws:cloudfront::ACCOUNT_ID:distribution/",
                    // ListBucket is on the bucket itself, never its objects.
                    "s3" => "arn:aws:s3:::",
                    // Items of the coordination table only: no table
                    // management, no other table.
                    "dynamodb" => "arn:aws:dynamodb:REGION:ACCOUNT_ID:table/TABLE_NAME",
                    other => panic!("{sid}: unexpected service {other} in {action}"),
                };
                for resource in &resources {
                    assert!(
                        resource.starts_with(prefix),
                        "{sid}: {action} on {resource}, expected {prefix}..."
                    );
                    assert!(!resource.contains('*'), "{sid}: wildcard resource");
                }
            }
            (sid, actions, resources)
        })
        .collect()
}

#[test]
fn iam_policy_allows_exactly_the_operations_the_code_calls() {
    let needed = required_actions();
    // The scan must see what the code is known to call; an empty or short
    // result means the scan broke, not that the code needs nothing.
    for action in [
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:SendMessage",
        "cloudfront:CreateInvalidation",
        "cloudfront:GetInvalidation",
        "cloudfront:ListInvalidations",
        "cloudfront:CreateInvalidationForDistributionTenant",
        "cloudfront:GetInvalidationForDistributionTenant",
        "cloudfront:ListInvalidationsForDistributionTenant",
        "s3:ListBucket",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:ConditionCheckItem",
    ] {
        assert!(
            needed.contains_key(action),
            "the scan of src/ found no call needing {action}: {needed:#?}"
        );
    }

    let statements = policy_statements();
    let allowed: BTreeSet<String> = statements
        .iter()
        .flat_map(|(_, actions, _)| actions.iter().cloned())
        .collect();
    let missing: Vec<_> = needed
        .iter()
        .filter(|(action, _)| !allowed.contains(*action))
        .collect();
    assert!(
        missing.is_empty(),
        "config/iam-policy.json lacks actions the code needs: {missing:#?}"
    );
    let extra: Vec<_> = allowed
        .iter()
        .filter(|action| !needed.contains_key(*action))
        .collect();
    assert!(
        extra.is_empty(),
        "config/iam-policy.json allows actions no code calls: {extra:?}"
    );

    // Buckets are only listed, and only the buckets themselves.
    for (sid, actions, resources) in &statements {
        if actions.iter().any(|a| a.starts_with("s3:")) {
            assert_eq!(actions, &["s3:ListBucket"], "{sid}");
            assert!(
                resources.iter().all(|r| !r.contains('/')),
                "{sid}: {resources:?}"
            );
        }
    }

    // The dead-letter queue is only ever sent to (rejects are forwarded).
    for (sid, actions, resources) in &statements {
        if resources.iter().any(|r| r.ends_with(":DLQ_NAME")) {
            assert_eq!(actions, &["sqs:SendMessage"], "{sid}");
        }
    }
}

#[test]
fn the_operation_scan_reads_calls_split_over_lines() {
    let code = compact_code(
        "let out = self\n    .client\n    .delete_message_batch()\n    .queue_url(u);\n\
         // client.purge_queue() in a comment\n\
         let r = http_client.get(&url);\n\
         let c = sqs_client.send_message();\n\
         #[cfg(test)]\nmod tests {\n    fn f() { client.create_queue(); }\n}\n",
    );
    assert_eq!(
        client_calls(&code),
        ["delete_message_batch", "send_message"]
    );
}

/// PromQL words that are not metric names: operators, modifiers, and the
/// aggregations (which may be followed by `by (...)` rather than `(`).
const PROMQL_KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// Skips from `open` (a bracket) to just after its matching `close`.
fn skip_group(chars: &[char], open_at: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    let mut i = open_at;
    while i < chars.len() {
        if chars[i] == open {
            depth += 1;
        } else if chars[i] == close {
            depth -= 1;
            if depth == 0 {
                return i + 1;
            }
        } else if chars[i] == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
        }
        i += 1;
    }
    panic!("unbalanced {open}{close}");
}

/// The metric names a PromQL expression reads: identifiers that are not
/// functions (followed by `(`), keywords, label matchers (`{...}`), ranges
/// (`[...]`), grouping labels (`by (...)`), strings or numbers.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut grouping = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_group(&chars, i, '{', '}');
        } else if c == '[' {
            i = skip_group(&chars, i, '[', ']');
        } else if c == '(' && grouping {
            i = skip_group(&chars, i, '(', ')');
            grouping = false;
        } else if c == '"' || c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&word.as_str())
            {
                grouping = true;
            } else if next == Some(&'(') || PROMQL_KEYWORDS.contains(&word.as_str()) {
                // A function or an aggregation.
            } else {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The `expr:` values of a rules file: inline, or a block scalar (`|`,
/// `>`) made of the following lines indented deeper than the key.
fn rule_expressions(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let Some(value) = trimmed.strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let indent = line.len() - trimmed.len();
            let block: Vec<&str> = lines[n + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .copied()
                .collect();
            exprs.push(block.join("\n"));
        } else {
            exprs.push(value.trim_matches(|c| c == '\'' || c == '"').to_owned());
        }
    }
    exprs
}

/// The names the daemon exports, with a histogram's `_bucket`, `_sum` and
/// `_count` series.
fn exported_names() -> BTreeSet<String> {
    let registry = prometheus::Registry::new();
    let metrics = cfpurge::metrics::Metrics::new(&registry, &["www"]).unwrap();
    // The edge's series exist only where verify and warm are configured.
    metrics.edge_configured("www", true, true);
    let mut names = BTreeSet::new();
    for family in registry.gather() {
        let name = family.name().to_owned();
        if family.get_field_type() == MetricType::HISTOGRAM {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
        names.insert(name);
    }
    names
}

#[test]
fn alert_rules_read_only_exported_metrics() {
    let yaml = fs::read_to_string(repo_file("config/alerts.yml")).unwrap();
    let exprs = rule_expressions(&yaml);
    assert!(exprs.len() >= 10, "found only {} expressions", exprs.len());
    let exported = exported_names();
    // Not the daemon's: Prometheus's own scrape status, and the dead-letter
    // queue's depth from a CloudWatch exporter.
    let external = [
        "up",
        "aws_sqs_approximate_number_of_messages_visible_average",
    ];
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric found in {expr:?}");
        used.extend(names);
    }
    let unknown: Vec<_> = used
        .iter()
        .filter(|name| !exported.contains(*name) && !external.contains(&name.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "config/alerts.yml reads metrics cfpurge does not export: {unknown:?}"
    );
    for name in [
        "cfpurge_budget_paths_used",
        "cfpurge_oldest_pending_seconds",
        "cfpurge_messages_rejected_total",
        "cfpurge_cloudfront_errors_total",
        "up",
    ] {
        assert!(used.contains(name), "no rule reads {name}: {used:?}");
    }
}

#[test]
fn the_metric_scan_skips_functions_labels_and_ranges() {
    let names = metric_names(
        "sum by (job, code) (rate(cfpurge_cloudfront_errors_total{code=~\"a|b\"}[10m])) > 0.05\n  \
         and on (job) cfpurge_budget_paths_used / cfpurge_budget_paths_limit > 0.9 or absent(up{job=\"x\"})",
    );
    let expected: BTreeSet<String> = [
        "cfpurge_cloudfront_errors_total",
        "cfpurge_budget_paths_used",
        "cfpurge_budget_paths_limit",
        "up",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(names, expected);
}

/// Metrics of the documented interface that the daemon does not register
/// yet: the dashboard may already chart them. Temporary: the test below
/// fails once the code registers one, so that it leaves this list.
const NOT_YET_REGISTERED: &[&str] = &[];

/// Every panel of a dashboard, those inside collapsed rows included.
fn dashboard_panels(panels: &Value, out: &mut Vec<Value>) {
    for panel in panels.as_array().expect("panels is an array") {
        out.push(panel.clone());
        if let Some(inner) = panel.get("panels") {
            dashboard_panels(inner, out);
        }
    }
}

/// `expr` with the dashboard's variables replaced as Grafana would: each
/// template variable by a sample value, Grafana's interval variables by
/// durations. Panics on a variable the dashboard does not define.
fn substitute(expr: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, skip) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced.find('}').expect("unclosed ${");
                (&braced[..end], end + 2)
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        let value = values.get(name).unwrap_or_else(|| {
            panic!("{expr:?} uses ${name}, which the dashboard does not define")
        });
        out.push_str(value);
        rest = &after[skip..];
    }
    out.push_str(rest);
    out
}

/// The dashboard, its panels (rows left out), and each query with its
/// variables substituted, as (panel title, expression).
fn dashboard() -> (Value, Vec<Value>, Vec<(String, String)>) {
    let text = fs::read_to_string(repo_file("deploy/grafana/cfpurge.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).expect("deploy/grafana/cfpurge.json is JSON");
    let mut values: BTreeMap<String, String> = [
        ("__rate_interval", "5m"),
        ("__interval", "1m"),
        ("__range", "1h"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for variable in dash["templating"]["list"].as_array().expect("templating") {
        let name = variable["name"].as_str().expect("a variable's name");
        let sample = match variable["type"].as_str() {
            Some("textbox" | "constant") => variable["query"].as_str().expect("a value"),
            Some("query" | "custom") => "www",
            // Stands for the data source, never inside a query.
            _ => continue,
        };
        values.insert(name.to_owned(), sample.to_owned());
    }
    let mut all = Vec::new();
    dashboard_panels(&dash["panels"], &mut all);
    let panels: Vec<Value> = all.into_iter().filter(|p| p["type"] != "row").collect();
    let mut queries = Vec::new();
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or("(untitled)").to_owned();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: a target without expr"));
            queries.push((title.clone(), substitute(expr, &values)));
        }
    }
    (dash, panels, queries)
}

#[test]
fn dashboard_is_provisionable_with_a_datasource_and_a_distribution_variable() {
    let (dash, panels, _) = dashboard();
    assert!(dash["schemaVersion"].as_u64().unwrap() >= 39);
    assert_eq!(dash["uid"], "cfpurge");
    // Provisioning and import both assign the id themselves.
    assert!(dash["id"].is_null());
    let variables = dash["templating"]["list"].as_array().unwrap();
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    let datasource = variable("datasource");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    let distribution = variable("distribution");
    assert_eq!(distribution["type"], "query");
    assert_eq!(distribution["includeAll"], true);
    assert_eq!(distribution["allValue"], ".*");
    assert_eq!(distribution["datasource"]["uid"], "${datasource}");
    let mut ids = BTreeSet::new();
    for panel in &panels {
        let title = &panel["title"];
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: id taken"
        );
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
        }
    }
    let provisioning = fs::read_to_string(repo_file("deploy/grafana/provisioning.yaml")).unwrap();
    for line in [
        "apiVersion: 1",
        "type: file",
        "path: /var/lib/grafana/dashboards/cfpurge",
    ] {
        assert!(
            provisioning.contains(line),
            "provisioning.yaml lacks {line:?}"
        );
    }
}

#[test]
fn dashboard_reads_only_exported_metrics_filtered_by_distribution() {
    let (_, panels, queries) = dashboard();
    assert!(panels.len() >= 12, "only {} panels", panels.len());
    let registry = prometheus::Registry::new();
    cfpurge::metrics::Metrics::new(&registry, &["www"]).unwrap();
    let by_distribution: BTreeSet<String> = registry
        .gather()
        .iter()
        .filter(|f| {
            f.get_metric()
                .iter()
                .any(|m| m.get_label().iter().any(|l| l.name() == "distribution"))
        })
        .map(|f| f.name().to_owned())
        .collect();
    let exported = exported_names();
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(
            queries
                .iter()
                .any(|(t, expr)| t == title && !metric_names(expr).is_empty()),
            "{title}: no query reads a metric"
        );
    }
    let mut used = BTreeSet::new();
    for (title, expr) in &queries {
        let names = metric_names(expr);
        for name in &names {
            assert!(
                exported.contains(name) || NOT_YET_REGISTERED.contains(&name.as_str()),
                "{title}: {name} is not a metric cfpurge exports ({expr:?})"
            );
            let family = name.trim_end_matches("_bucket");
            if by_distribution.contains(family) {
                assert!(
                    expr.contains(&format!("{name}{{distribution=~\"www\"")),
                    "{title}: {name} is not filtered by $distribution ({expr:?})"
                );
            }
        }
        used.extend(names);
    }
    for name in [
        "cfpurge_pending_paths",
        "cfpurge_oldest_pending_seconds",
        "cfpurge_inflight_paths",
        "cfpurge_budget_paths_used",
        "cfpurge_budget_paths_allowed",
        "cfpurge_budget_paths_limit",
        "cfpurge_invalidations_created_total",
        "cfpurge_paths_submitted_total",
        "cfpurge_cloudfront_errors_total",
        "cfpurge_request_to_invalidation_seconds_bucket",
        "cfpurge_messages_received_total",
        "cfpurge_messages_deleted_total",
        "cfpurge_messages_rejected_total",
        "cfpurge_leader",
        "cfpurge_leader_changes_total",
    ] {
        assert!(used.contains(name), "no panel reads {name}");
    }
}

#[test]
fn the_not_yet_registered_metrics_are_not_registered() {
    let exported = exported_names();
    for name in NOT_YET_REGISTERED {
        assert!(
            !exported.contains(*name),
            "{name} is registered now: remove it from NOT_YET_REGISTERED in tests/it/ops.rs"
        );
    }
}

#[test]
fn dashboard_variables_are_substituted() {
    let values: BTreeMap<String, String> = [("distribution", "www"), ("__rate_interval", "5m")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(
        substitute(
            "rate(x{distribution=~\"$distribution\"}[${__rate_interval}]) + y[$__rate_interval]",
            &values
        ),
        "rate(x{distribution=~\"www\"}[5m]) + y[5m]"
    );
}
