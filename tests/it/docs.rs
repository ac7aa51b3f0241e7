//! The documentation keeps up with the code: every metric the code
//! registers is in the interface page, every configuration key it accepts
//! is in the configuration page (whose key listing is the example
//! configuration itself), and every page under `docs/` is reachable from the
//! README. Nothing points outside the repository.

use std::fs;

use cfpurge::config::Config;
use cfpurge::metrics::Metrics;

fn repo_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn read(path: &str) -> String {
    fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_registered_metric_is_documented() {
    let registry = prometheus::Registry::new();
    let metrics = Metrics::new(&registry, &["www"]).expect("metrics");
    // The edge's series exist only where verify and warm are configured.
    metrics.edge_configured("www", true, true);
    let names: Vec<String> = registry
        .gather()
        .iter()
        .map(|family| family.name().to_owned())
        .filter(|name| name.starts_with("cfpurge_"))
        .collect();
    assert!(names.len() >= 20, "{names:?}");
    let page = read("docs/interface.md");
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| !page.contains(&format!("| `{name}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/interface.md's metric table lacks {missing:?}"
    );
}

#[test]
fn every_configuration_key_is_documented() {
    let example = read("config/cfpurge.example.toml");
    let page = read("docs/configuration.md");
    // The listing is the example file itself, which another test checks
    // against the keys the code accepts.
    assert!(
        page.contains(&format!("```toml\n{}\n```", example.trim_end())),
        "docs/configuration.md's \"Every key\" block differs from config/cfpurge.example.toml"
    );
    let cfg = Config::from_parts(Some(&example), "x", []).expect("the example loads");
    let full: toml::Table = toml::to_string(&cfg).unwrap().parse().unwrap();
    for (section, table) in &full {
        assert!(
            page.contains(&format!("[{section}]"))
                || page.contains(&format!("[{section}."))
                || page.contains(&format!("[[{section}."))
                || section == "distributions",
            "docs/configuration.md does not show [{section}]"
        );
        for (key, value) in table.as_table().unwrap() {
            let keys: Vec<String> = match value {
                toml::Value::Table(t) if section == "distributions" => t.keys().cloned().collect(),
                toml::Value::Array(items) => items
                    .iter()
                    .flat_map(|i| i.as_table().unwrap().keys().cloned())
                    .collect(),
                _ => vec![key.clone()],
            };
            for key in keys {
                assert!(
                    shows_key(&page, &key),
                    "docs/configuration.md does not show {section}.{key}"
                );
            }
        }
    }
}

/// Whether `page` sets `key` (`key = ...`) as a key of its own: `id = `
/// inside `tenant_id = ` does not count, nor does `burst = ` inside
/// `create_burst = `.
fn shows_key(page: &str, key: &str) -> bool {
    let needle = format!("{key} = ");
    page.match_indices(&needle).any(|(at, _)| {
        page[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
    })
}

#[test]
fn a_key_is_shown_only_by_itself_not_inside_a_longer_one() {
    assert!(shows_key("id = \"E1\"", "id"));
    assert!(shows_key("[distributions.www]\nid = \"E1\"", "id"));
    assert!(shows_key("# id = \"E1\"", "id"));
    assert!(!shows_key("tenant_id = \"dt_1\"", "id"));
    assert!(!shows_key("create_burst = 3", "burst"));
    assert!(!shows_key("coalesce.strategy = \"x\"", "strategy"));
    assert!(shows_key("create_burst = 3\nburst = 1", "burst"));
}

#[test]
fn every_page_is_reachable_from_the_readme_and_nothing_points_outside() {
    let readme = read("README.md");
    let mut pages: Vec<String> = fs::read_dir(repo_file("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .collect();
    pages.sort();
    assert!(pages.len() >= 5, "{pages:?}");
    for page in &pages {
        assert!(
            readme.contains(&format!("(docs/{page})")),
            "README.md does not link docs/{page}"
        );
    }
    for file in pages
        .iter()
        .map(|p| format!("docs/{p}"))
        .chain(["README.md".to_owned()])
    {
        let text = read(&file);
        for outside in ["../shared", "CONTRACT.md", "DESIGN.md", "AWS_FACTS.md"] {
            assert!(!text.contains(outside), "{file} points at {outside}");
        }
        // Every relative link to a file of the repository leads somewhere,
        // and to a heading of it where it names one.
        for link in text.split("](").skip(1) {
            let target = link.split(')').next().unwrap_or("");
            if target.starts_with("http") || target.is_empty() {
                continue;
            }
            let (target, anchor) = target.split_once('#').unwrap_or((target, ""));
            let base = if file.starts_with("docs/") {
                "docs/"
            } else {
                ""
            };
            let linked = if target.is_empty() {
                file.clone()
            } else {
                format!("{base}{target}")
            };
            let path = repo_file(&linked);
            assert!(path.exists(), "{file}: the link {target} leads nowhere");
            if !anchor.is_empty() && linked.ends_with(".md") {
                let headings = heading_anchors(&read(&linked));
                assert!(
                    headings.iter().any(|h| h == anchor),
                    "{file}: the link {target}#{anchor} names no heading of {linked}"
                );
            }
        }
    }
}

/// The anchors of a Markdown page's headings, as GitHub makes them:
/// lower case, spaces to hyphens, punctuation other than `-` and `_`
/// dropped, `-1`, `-2`, ... after repeats. Fenced code, and a line of
/// `#` not followed by a space, are not headings.
fn heading_anchors(text: &str) -> Vec<String> {
    let mut anchors: Vec<String> = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        // A heading is 1 to 6 `#` and a space.
        let title = line.trim_start_matches('#');
        let level = line.len() - title.len();
        if fenced || !(1..=6).contains(&level) || !title.starts_with(' ') {
            continue;
        }
        let title = title.trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                '-' | '_' => Some(c),
                c if c.is_alphanumeric() => Some(c),
                _ => None,
            })
            .collect();
        let repeats = anchors
            .iter()
            .filter(|a| {
                **a == slug
                    || a.strip_prefix(&format!("{slug}-"))
                        .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .count();
        anchors.push(if repeats == 0 {
            slug
        } else {
            format!("{slug}-{repeats}")
        });
    }
    anchors
}

#[test]
fn a_heading_anchor_is_made_as_github_makes_it() {
    let page = "# cfpurge\n```sh\n# not a heading\n```\n#nor-this\n### `burst_paths` and the blast\n## Month by month: a budget\n## Month by month: a budget\n";
    assert_eq!(
        heading_anchors(page),
        [
            "cfpurge",
            "burst_paths-and-the-blast",
            "month-by-month-a-budget",
            "month-by-month-a-budget-1"
        ]
    );
}

/// The part of `text` under the heading `heading` (the whole line, e.g.
/// `### The IAM policy`), up to the next heading of the same or a higher
/// level.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let level = heading.split(' ').next().unwrap();
    let start = text
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no heading {heading:?}"))
        + 1;
    let body = &text[start + heading.len()..];
    let end = body
        .match_indices("\n#")
        .find(|(at, _)| {
            let hashes: String = body[at + 1..].chars().take_while(|c| *c == '#').collect();
            hashes.len() <= level.len() && body[at + 1 + hashes.len()..].starts_with(' ')
        })
        .map_or(body.len(), |(at, _)| at);
    &text[start..start + heading.len() + end]
}

/// The placeholders of an IAM resource ARN: its upper-case words
/// (`arn:aws:sqs:REGION:ACCOUNT_ID:QUEUE_NAME`).
fn placeholders(arn: &str) -> Vec<String> {
    arn.split([':', '/'])
        .filter(|w| w.len() > 1 && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_iam_section_names_every_statement_action_and_placeholder_of_the_policy() {
    let policy: serde_json::Value =
        serde_json::from_str(&read("config/iam-policy.json")).expect("the policy is JSON");
    let page = read("docs/operations.md");
    let iam = section(&page, "### The IAM policy");
    let statements = policy["Statement"].as_array().expect("statements");
    assert!(statements.len() >= 6, "{statements:?}");
    let mut missing = Vec::new();
    let mut all_placeholders = Vec::new();
    for statement in statements {
        let sid = statement["Sid"]
            .as_str()
            .expect("every statement has a Sid");
        if !iam.contains(&format!("`{sid}`")) {
            missing.push(format!("statement {sid}"));
        }
        let as_list = |v: &serde_json::Value| -> Vec<String> {
            match v {
                serde_json::Value::String(s) => vec![s.clone()],
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().unwrap().to_owned())
                    .collect(),
                other => panic!("{sid}: unexpected {other}"),
            }
        };
        for action in as_list(&statement["Action"]) {
            if !iam.contains(&format!("`{action}`")) {
                missing.push(format!("{sid}: action {action}"));
            }
        }
        for resource in as_list(&statement["Resource"]) {
            for placeholder in placeholders(&resource) {
                if !all_placeholders.contains(&placeholder) {
                    all_placeholders.push(placeholder);
                }
            }
        }
    }
    for placeholder in &all_placeholders {
        if !iam.contains(&format!("`{placeholder}`")) {
            missing.push(format!("placeholder {placeholder}"));
        }
    }
    for expected in [
        "CATALOG_BUCKET",
        "TABLE_NAME",
        "QUEUE_NAME",
        "DISTRIBUTION_ID",
    ] {
        assert!(
            all_placeholders.iter().any(|p| p == expected),
            "{all_placeholders:?}"
        );
    }
    assert!(
        missing.is_empty(),
        "docs/operations.md's IAM section does not name {missing:?}"
    );
    // The summary of the policy in the table of files names every service
    // it grants.
    let files_row = page
        .lines()
        .find(|l| l.starts_with("| `config/iam-policy.json` |"))
        .expect("the files table lists the policy");
    for service in ["SQS", "CloudFront", "S3", "DynamoDB"] {
        assert!(files_row.contains(service), "{files_row}");
    }
}

/// `(alert, severity)` for every rule of `config/alerts.yml`, read line by
/// line (the file's layout is fixed: `- alert:` then its `severity:`).
fn alert_rules() -> Vec<(String, String)> {
    let yaml = read("config/alerts.yml");
    let mut rules: Vec<(String, String)> = Vec::new();
    for line in yaml.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- alert:") {
            rules.push((name.trim().to_owned(), String::new()));
        } else if let Some(severity) = line.strip_prefix("severity:") {
            let last = rules.last_mut().expect("severity before any alert");
            assert!(last.1.is_empty(), "{} has two severities", last.0);
            last.1 = severity.trim().trim_matches('"').to_owned();
        }
    }
    rules
}

#[test]
fn the_alert_table_lists_every_rule_with_its_severity() {
    let rules = alert_rules();
    assert!(rules.len() >= 15, "{rules:?}");
    assert!(rules.iter().all(|(_, s)| !s.is_empty()), "{rules:?}");
    let page = read("docs/operations.md");
    let alerts = section(&page, "### Alert rules");
    let rows: Vec<(String, String)> = alerts
        .lines()
        .filter(|l| l.starts_with("| `Cfpurge"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            (
                cells[0].trim_matches('`').to_owned(),
                (*cells.last().unwrap()).to_owned(),
            )
        })
        .collect();
    assert_eq!(
        rows, rules,
        "docs/operations.md's alert table (name, severity) differs from config/alerts.yml"
    );
    let count = format!("finds {} rules", rules.len());
    assert!(
        page.contains(&count),
        "docs/operations.md does not say {count:?}"
    );
}

/// A sample's expected output matches `actual` line by line; a line `...`
/// in the sample stands for any number of lines.
fn sample_matches(expected: &[&str], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((&"...", rest)) => {
            (0..=actual.len()).any(|skip| sample_matches(rest, &actual[skip..]))
        }
        Some((line, rest)) => actual.first() == Some(line) && sample_matches(rest, &actual[1..]),
    }
}

#[test]
fn a_sample_with_an_ellipsis_matches_only_its_output() {
    let out = ["/a", "/b", "/c", "# summary"];
    assert!(sample_matches(&["/a", "...", "# summary"], &out));
    assert!(sample_matches(&["/a", "/b", "/c", "# summary"], &out));
    assert!(!sample_matches(&["/a", "...", "# other"], &out));
    assert!(!sample_matches(&["/a", "/b"], &out));
    assert!(!sample_matches(&["/b", "..."], &out));
}

/// Every ```console block of the README and docs/ whose lines start with
/// `$ cfpurge` is run from the repository root (with this build's binary,
/// without any configuration from the environment), and what it prints on
/// stdout must be what the block shows.
#[test]
fn every_sample_output_is_what_its_command_prints() {
    let mut files = vec!["README.md".to_owned()];
    for entry in fs::read_dir(repo_file("docs")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            files.push(format!("docs/{name}"));
        }
    }
    files.sort();
    // The smallest configuration there is, whatever the machine has in
    // /etc/cfpurge: every setting at its default, as without a file.
    let minimal = tempfile::NamedTempFile::new().unwrap();
    fs::write(
        minimal.path(),
        "[source]\nkind = \"local\"\n[distributions.www]\nid = \"E2ABCDEF123456\"\n",
    )
    .unwrap();
    let mut samples = 0;
    for file in &files {
        let text = read(file);
        for block in text.split("```console\n").skip(1) {
            let block = block.split("\n```").next().unwrap();
            let mut lines = block.lines().peekable();
            while let Some(line) = lines.next() {
                let command = line.strip_prefix("$ cfpurge ").unwrap_or_else(|| {
                    panic!("{file}: a console block line {line:?} is not a `$ cfpurge` command")
                });
                let mut expected = Vec::new();
                while let Some(next) = lines.peek().filter(|l| !l.starts_with("$ ")) {
                    expected.push(*next);
                    lines.next();
                }
                let out = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(format!("\"$CFPURGE_BIN\" {command}"))
                    .current_dir(env!("CARGO_MANIFEST_DIR"))
                    // Nothing from this environment (CFPURGE__ overrides).
                    .env_clear()
                    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                    .env("CFPURGE_BIN", env!("CARGO_BIN_EXE_cfpurge"))
                    .env("CFPURGE_CONFIG", minimal.path())
                    .env("NO_COLOR", "1")
                    .output()
                    .expect("sh");
                assert!(
                    out.status.success(),
                    "{file}: `cfpurge {command}` failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let stdout = String::from_utf8_lossy(&out.stdout);
                let actual: Vec<&str> = stdout.lines().collect();
                assert!(
                    sample_matches(&expected, &actual),
                    "{file}: `cfpurge {command}` prints\n{stdout}\nnot what the sample shows:\n{}",
                    expected.join("\n")
                );
                samples += 1;
            }
        }
    }
    assert!(samples >= 1, "no sample found");
}

#[test]
fn every_data_file_of_the_examples_is_named_where_it_is_used() {
    let mut pages = vec![read("README.md")];
    for entry in fs::read_dir(repo_file("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(fs::read_to_string(path).unwrap());
        }
    }
    for entry in fs::read_dir(repo_file("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() || path.extension().is_some_and(|e| e == "rs") {
            continue;
        }
        let name = format!("examples/{}", path.file_name().unwrap().to_string_lossy());
        assert!(
            pages.iter().any(|p| p.contains(&name)),
            "{name} is named in no page"
        );
    }
}

/// The README stays a front page.
#[test]
fn the_readme_is_at_most_300_lines() {
    let lines = read("README.md").lines().count();
    assert!(lines <= 300, "README.md has {lines} lines");
}

/// The Quick start is two commands, each in a block of its own (so that
/// pasting the first does not start the second after Ctrl-C), and it says
/// what the second needs.
#[test]
fn the_quick_start_is_two_commands_each_in_its_own_block() {
    let readme = read("README.md");
    let quick = section(&readme, "## Quick start");
    let blocks: Vec<Vec<&str>> = quick
        .split("```sh\n")
        .skip(1)
        .map(|b| {
            b.split("\n```")
                .next()
                .unwrap()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect()
        })
        .collect();
    assert_eq!(
        blocks,
        [
            vec!["cargo run -- run -c config/local.toml"],
            vec!["scripts/test"]
        ],
        "the Quick start's shell blocks"
    );
    let tests_part = &quick[quick.find("```sh\nscripts/test").unwrap()..];
    for need in ["root", "apt-get", "network"] {
        assert!(
            tests_part.contains(need),
            "the Quick start does not say that scripts/test needs {need}"
        );
    }
}

/// A reader who copies commands in order has `cfpurge` before the README
/// first calls it by that name.
#[test]
fn the_readme_installs_cfpurge_before_calling_it_by_name() {
    let readme = read("README.md");
    let mut installed = false;
    for block in readme.split("```sh\n").skip(1) {
        for line in block.split("\n```").next().unwrap().lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if line.contains("cargo install")
                || (words.first() == Some(&"sudo")
                    && line.contains("install")
                    && line.ends_with("/cfpurge"))
            {
                installed = true;
            }
            let calls = words
                .iter()
                .take_while(|w| !w.starts_with('#'))
                .any(|w| *w == "cfpurge");
            assert!(
                !calls || installed,
                "README.md runs `{line}` before any step installs cfpurge"
            );
        }
    }
    assert!(installed, "README.md never installs cfpurge");
}

/// Every value of `waiting.on` is in the interface's table, in the order
/// the daemon judges them, and in the operations page's table of what to
/// do about each.
#[test]
fn every_waiting_value_is_documented_in_order_with_what_to_do() {
    use cfpurge::status::WaitingOn;
    let values: Vec<&str> = WaitingOn::ALL.iter().map(|w| w.as_str()).collect();
    let interface = read("docs/interface.md");
    let listed: Vec<&str> = interface
        .split("\n| `on` | the pending paths wait for |\n|---|---|\n")
        .nth(1)
        .expect("docs/interface.md has the table of waiting.on")
        .lines()
        .take_while(|l| l.starts_with("| `"))
        .map(|l| l.trim_start_matches("| `").split('`').next().unwrap())
        .collect();
    assert_eq!(listed, values, "docs/interface.md's table of waiting.on");
    let operations = read("docs/operations.md");
    let todo = operations
        .split("\n| the page shows | what to do |\n|---|---|\n")
        .nth(1)
        .expect("docs/operations.md has the table of what to do");
    let shown: Vec<&str> = todo
        .lines()
        .take_while(|l| l.starts_with("| "))
        .map(|l| l.split(" | ").next().unwrap())
        .collect();
    for value in values {
        assert!(
            shown
                .iter()
                .any(|cell| cell.starts_with(&format!("| `{value}`"))
                    || cell.contains(&format!(", `{value}`"))),
            "docs/operations.md's table of what to do does not start a row with `{value}`: {shown:#?}"
        );
    }
}

/// Whether a shell line runs `cfpurge` as a command: the first word of a
/// command (after `VAR=value` assignments and `sudo`), not an argument such
/// as a namespace called cfpurge.
fn runs_cfpurge(line: &str) -> bool {
    let line = line.split(" #").next().unwrap_or(line);
    line.split(['|', ';', '&', '('])
        .filter_map(|command| {
            command
                .split_whitespace()
                // `VAR=value` is an assignment, `--flag=value` an argument.
                .find(|w| (w.starts_with('-') || !w.contains('=')) && *w != "sudo")
        })
        .any(|w| w == "cfpurge")
}

/// docs/kubernetes.md is read on its own, from a workstation that may have
/// no cfpurge: before its first `cfpurge` command it says where the binary
/// comes from (the README's install step, or the image).
#[test]
fn the_kubernetes_page_says_where_cfpurge_comes_from_before_running_it() {
    assert!(runs_cfpurge("  cfpurge check-config -c cfpurge.toml"));
    assert!(runs_cfpurge("X=1 Y=2 cfpurge status"));
    assert!(runs_cfpurge("kubectl get x && sudo cfpurge status"));
    assert!(!runs_cfpurge(
        "kubectl -n cfpurge create secret generic cfpurge \\"
    ));
    assert!(!runs_cfpurge(
        "  --namespace cfpurge --service-account cfpurge"
    ));
    let page = read("docs/kubernetes.md");
    let link = "(../README.md#next-your-aws-account)";
    assert!(
        read("README.md").contains("\n## Next: your AWS account\n"),
        "the README's install section, which {link} names, is gone"
    );
    let mut before = String::new();
    for (i, block) in page.split("```sh\n").enumerate() {
        if i > 0 {
            let code = block.split("\n```").next().unwrap();
            if let Some(line) = code.lines().find(|l| runs_cfpurge(l)) {
                assert!(
                    before.contains(link),
                    "docs/kubernetes.md runs `{line}` before saying where cfpurge comes from {link}"
                );
                return;
            }
        }
        before.push_str(block);
    }
    panic!("docs/kubernetes.md runs no cfpurge command");
}

/// A page's shell commands are run in order by a reader who pastes them:
/// every variable they read (`$name`, `${name...}`, outside single quotes)
/// is set on an earlier line of the same page (`name=...`, `export
/// name=...`), or is one a shell has (`$EDITOR`, `$PWD`, `$HOME`).
#[test]
fn every_shell_variable_the_docs_read_is_set_before() {
    let mut pages = vec!["README.md".to_owned()];
    for entry in fs::read_dir(repo_file("docs")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            pages.push(format!("docs/{name}"));
        }
    }
    let mut unset = Vec::new();
    for page in &pages {
        let text = read(page);
        let mut set: Vec<String> = ["EDITOR", "PWD", "HOME"].map(str::to_owned).to_vec();
        for block in text.split("```sh\n").skip(1) {
            for line in block.split("\n```").next().unwrap().lines() {
                // What single quotes hold is not expanded (jq's, awk's own
                // variables).
                let expanded: String = line.split('\'').step_by(2).collect::<Vec<_>>().join(" ");
                for used in expanded.split('$').skip(1) {
                    let name: String = used
                        .trim_start_matches('{')
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                        && !set.contains(&name)
                    {
                        unset.push(format!("{page}: ${name} in `{}`", line.trim()));
                    }
                }
                for word in line
                    .trim_start()
                    .trim_start_matches("export ")
                    .split_whitespace()
                    .take(1)
                {
                    if let Some((name, _)) = word.split_once('=') {
                        set.push(name.to_owned());
                    }
                }
            }
        }
    }
    assert!(unset.is_empty(), "read before they are set: {unset:#?}");
}

/// `scripts/test --help` prints its usage and starts nothing. Run with an
/// empty PATH: a run that went past the usage would fail at once for
/// want of python3 and cargo rather than install or build anything.
#[test]
fn scripts_test_help_prints_usage_and_runs_nothing() {
    let run = |arg: &str| {
        std::process::Command::new("/bin/bash")
            .arg(repo_file("scripts/test"))
            .arg(arg)
            .current_dir(std::env::temp_dir())
            .env_clear()
            .env("PATH", "/nonexistent")
            .output()
            .expect("bash")
    };
    for arg in ["--help", "-h"] {
        let out = run(arg);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{arg}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.starts_with("usage: scripts/test"), "{stdout}");
        for need in ["root", "network"] {
            assert!(stdout.contains(need), "{stdout}");
        }
    }
    let out = run("--bogus");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("usage: scripts/test"));
}
