//! The library's top-level modules import each other in one direction:
//! down the layers of [`LAYERS`], never up, and with no circle of `crate::`
//! references between them, within a layer either. From the bottom:
//!
//! 1. shared names that import no other module: `clock` (time), `path`
//!    (the CloudFront path model), `memory` (byte costs), `durable` and
//!    `regular_file` (files written and read safely);
//! 2. `config`, the typed configuration;
//! 3. `aws`: the SDK's configuration, one client builder per service and
//!    the one error classifier;
//! 4. the stages of the flow and what they share: `decode` (bodies into
//!    requests), `source` (messages in, deleted once covered), `pending`
//!    (what waits and which message it covers), `catalog` (what the site
//!    serves), `planner` (pending paths into invalidation paths), `budget`
//!    (the month's spending), `coordination` (the lease and the shared
//!    table), `cloudfront` (the service and its rules), `tracker` and
//!    `submitter` (invalidations followed and created), `edge` (checks and
//!    warming after completion);
//! 5. what is shown of the daemon: `status`, `metrics`, `status_page`;
//! 6. what runs it all: `pipeline`, `daemon` (the core and its runner),
//!    `replay` (the core on a virtual clock), `http` (the listener);
//! 7. `commands`, what each subcommand does, which only `main.rs` calls.
//!
//! A circle makes two rooms one, which the layout no longer shows, and an
//! import against the flow parks a shared name in whichever stage needed
//! it first: this test names each. It reads `src/**/*.rs` itself (no build
//! script, no extra crate): every `crate::NAME` in code (comments and
//! string literals skipped) is an edge from the file's top-level module to
//! `NAME`. Code under `#[cfg(test)]` is left out: tests may reach across
//! layers to build what they check. An edge that cannot be turned round
//! yet is listed in [`KNOWN`] with the reason; an entry whose edge is gone
//! fails the test too, so the list only shrinks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first: a module may import its own layer's modules
/// (without a circle) and those of the layers below.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "shared names",
        &["clock", "path", "memory", "durable", "regular_file"],
    ),
    ("configuration", &["config"]),
    ("AWS clients", &["aws"]),
    (
        "flow stages",
        &[
            "decode",
            "source",
            "pending",
            "catalog",
            "planner",
            "budget",
            "coordination",
            "cloudfront",
            "tracker",
            "submitter",
            "edge",
        ],
    ),
    ("what is shown", &["status", "metrics", "status_page"]),
    ("what runs", &["pipeline", "daemon", "replay", "http"]),
    ("commands", &["commands"]),
];

/// Edges allowed against the layers or in a circle, for now: (from, to,
/// why).
const KNOWN: &[(&str, &str, &str)] = &[];

type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

#[test]
fn imports_go_down_the_layers_without_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = import_graph(&src);
    let mut problems = Vec::new();
    let mut allowed = graph.clone();
    for (from, to, why) in KNOWN {
        let present = allowed.get_mut(*from).and_then(|to_set| to_set.remove(*to));
        if present.is_none() {
            problems.push(format!(
                "known exception {from} -> {to} ({why}) no longer exists: remove it from KNOWN"
            ));
        }
    }
    let layer_of = |module: &str| LAYERS.iter().position(|(_, m)| m.contains(&module));
    for module in top_modules(&src) {
        if layer_of(&module).is_none() {
            problems.push(format!(
                "module {module} is in no layer: add it to LAYERS where the flow puts it"
            ));
        }
    }
    problems.extend(against_the_layers(&allowed, layer_of));
    for circle in circles(&allowed) {
        problems.push(describe(&allowed, &circle));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Each edge from a module to one on a layer above it.
fn against_the_layers(graph: &Graph, layer_of: impl Fn(&str) -> Option<usize>) -> Vec<String> {
    let mut found = Vec::new();
    for (from, to_files) in graph {
        for (to, files) in to_files {
            if let (Some(a), Some(b)) = (layer_of(from), layer_of(to))
                && b > a
            {
                let files: Vec<&str> = files.iter().map(String::as_str).collect();
                found.push(format!(
                    "{from} ({}) imports {to} ({}), a layer above it ({})",
                    LAYERS[a].0,
                    LAYERS[b].0,
                    files.join(", ")
                ));
            }
        }
    }
    found
}

/// The modules `lib.rs` declares, as files or folders of `src`.
fn top_modules(src: &Path) -> BTreeSet<String> {
    std::fs::read_dir(src)
        .unwrap()
        .map(|e| top_module(Path::new(&e.unwrap().file_name())))
        .filter(|m| m != "lib" && m != "main")
        .collect()
}

/// The checker itself: a circle made on purpose is found and named, and
/// comments, strings and test code do not count.
#[test]
fn a_circle_is_found_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |name: &str, text: &str| {
        let path = src.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n");
    write("a.rs", "use crate::b::Thing;\n// crate::c::in_a_comment\n");
    write(
        "b/mod.rs",
        "mod inner;\nconst S: &str = \"crate::a::in_a_string\";\nfn f<'a>(x: &'a u8) -> char { '\"' }\n",
    );
    write("b/inner.rs", "use crate::{c::{self, D}, path};\n");
    write(
        "c.rs",
        "#[cfg(test)]\nmod tests {\n    use crate::a::X;\n}\n#[cfg(test)]\nmod more;\n",
    );
    write("c/more.rs", "use crate::b::Y;\n");
    write(
        "a.rs",
        "use crate::b::Thing;\n// crate::c::in_a_comment\n#[cfg(test)]\n#[path = \"a_tests.rs\"]\nmod tests;\n",
    );
    write("a_tests.rs", "use crate::c::Z;\n");
    let graph = import_graph(src);
    let edges: Vec<(String, String)> = graph
        .iter()
        .flat_map(|(from, to)| to.keys().map(move |to| (from.clone(), to.clone())))
        .collect();
    let edge = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        edges,
        [edge("a", "b"), edge("b", "c"), edge("b", "path")],
        "{graph:?}"
    );
    assert!(circles(&graph).is_empty());
    // With a on the bottom layer and b, c above it, a's import goes up.
    let layer_of = |m: &str| {
        ["a", "b", "c"]
            .iter()
            .position(|x| *x == m)
            .map(|i| i.min(1))
    };
    assert_eq!(
        against_the_layers(&graph, layer_of),
        ["a (shared names) imports b (configuration), a layer above it (a.rs)"]
    );

    // Now c imports a in code: a -> b -> c -> a.
    write("c.rs", "pub fn f() -> crate::a::X { todo!() }\n");
    let graph = import_graph(src);
    let found: Vec<String> = circles(&graph)
        .iter()
        .map(|c| describe(&graph, c))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("import circle: a -> b -> c -> a"),
        "{found:?}"
    );
    assert!(found[0].contains("c -> a (c.rs)"), "{found:?}");
    assert!(found[0].contains("b -> c (b/inner.rs)"), "{found:?}");
}

/// Every `crate::NAME` of each top-level module: from -> to -> the files
/// (relative to `src`) where it is named.
fn import_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let tests_only = test_only_files(src, &files);
    let mut graph = Graph::new();
    for file in &files {
        let rel = file.strip_prefix(src).unwrap();
        if tests_only.contains(file) || rel == Path::new("lib.rs") || rel == Path::new("main.rs") {
            continue;
        }
        let from = top_module(rel);
        let text = std::fs::read_to_string(file).unwrap();
        let code = without_tests(&code_only(&text));
        for to in crate_refs(&code) {
            if to != from && to != "self" && to != "super" {
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(rel.display().to_string());
            }
        }
    }
    graph
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `config` for `config.rs`, `config/load.rs` and `config/x/y.rs`.
fn top_module(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_str()
        .unwrap();
    first.strip_suffix(".rs").unwrap_or(first).to_owned()
}

/// Files declared as `#[cfg(test)] mod NAME;` (or with a
/// `#[path = "FILE"]` between the two), and what lies below them. Read
/// line by line: such a declaration is written on lines of its own.
fn test_only_files(src: &Path, files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut dirs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        // A file's children live beside it (`mod.rs`, `lib.rs`) or in the
        // folder of its name (`config.rs` -> `config/`); a `#[path]` is
        // relative to the file's own folder.
        let stem = file.file_stem().unwrap().to_str().unwrap();
        let parent = file.parent().unwrap();
        let base = if matches!(stem, "mod" | "lib" | "main") && parent.starts_with(src) {
            parent.to_path_buf()
        } else {
            parent.join(stem)
        };
        let mut lines = text.lines().map(str::trim);
        while let Some(line) = lines.next() {
            if line != "#[cfg(test)]" {
                continue;
            }
            let mut path = None;
            for line in lines.by_ref() {
                if let Some(file) = line
                    .strip_prefix("#[path = \"")
                    .and_then(|l| l.strip_suffix("\"]"))
                {
                    path = Some(parent.join(file).with_extension(""));
                } else if line.starts_with("#[") {
                    continue;
                } else {
                    if let Some(name) = line
                        .strip_prefix("mod ")
                        .or_else(|| line.strip_prefix("pub mod "))
                        .and_then(|l| l.strip_suffix(';'))
                    {
                        dirs.push(path.take().unwrap_or_else(|| base.join(name)));
                    }
                    break;
                }
            }
        }
    }
    files
        .iter()
        .filter(|f| {
            dirs.iter()
                .any(|d| f.with_extension("") == *d || f.starts_with(d))
        })
        .cloned()
        .collect()
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The text with comments and the insides of string and character
/// literals blanked out, so that only code is searched.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !out.chars().last().is_some_and(is_ident)
        {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let close: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let body: String = chars[j + 1..].iter().collect();
            let end = body.find(&close).map_or(chars.len(), |at| {
                j + 1 + body[..at].chars().count() + close.chars().count()
            });
            out.push_str("\"\"");
            i = end;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A character literal ('x', '\n', '"'); else a lifetime.
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The code without `#[cfg(test)]` items written in place (`mod tests {
/// ... }`, or one item up to its `;` or its closing brace).
fn without_tests(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        rest = &rest[at + "#[cfg(test)]".len()..];
        let mut depth = 0usize;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The top-level module named after each `crate::` (and `$crate::`),
/// groups included: `crate::{a, b::c}` names `a` and `b`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(is_ident) {
            continue;
        }
        let after = rest.trim_start();
        if let Some(group) = after.strip_prefix('{') {
            for item in split_top(group) {
                let name: String = item.trim().chars().take_while(|c| is_ident(*c)).collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name: String = after.chars().take_while(|c| is_ident(*c)).collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// The comma-separated items of a `{...}` group's top level, up to its
/// closing brace.
fn split_top(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..i]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    items
}

/// The circles among the modules, each as a path that returns to its
/// start: in each strongly connected component of more than one module
/// (Tarjan's algorithm), a shortest circle through each module that no
/// circle found before passes, so every module of a knot is named.
fn circles(graph: &Graph) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = graph
        .iter()
        .flat_map(|(from, to)| std::iter::once(from).chain(to.keys()))
        .collect();
    let mut components = Vec::new();
    let mut state = Tarjan::default();
    for node in &nodes {
        if !state.index.contains_key(*node) {
            state.visit(graph, node, &mut components);
        }
    }
    let mut found = Vec::new();
    for component in components.into_iter().filter(|c| c.len() > 1) {
        let mut named = BTreeSet::new();
        for start in &component {
            if !named.contains(start) {
                let circle = circle_in(graph, &component, start);
                named.extend(circle.iter().cloned());
                found.push(circle);
            }
        }
    }
    found
}

#[derive(Default)]
struct Tarjan {
    next: usize,
    index: BTreeMap<String, usize>,
    low: BTreeMap<String, usize>,
    stack: Vec<String>,
    on_stack: BTreeSet<String>,
}

impl Tarjan {
    fn visit(&mut self, graph: &Graph, node: &str, out: &mut Vec<BTreeSet<String>>) {
        self.index.insert(node.to_owned(), self.next);
        self.low.insert(node.to_owned(), self.next);
        self.next += 1;
        self.stack.push(node.to_owned());
        self.on_stack.insert(node.to_owned());
        for to in graph.get(node).into_iter().flat_map(|t| t.keys()) {
            if !self.index.contains_key(to) {
                self.visit(graph, to, out);
                let low = self.low[node].min(self.low[to]);
                self.low.insert(node.to_owned(), low);
            } else if self.on_stack.contains(to) {
                let low = self.low[node].min(self.index[to]);
                self.low.insert(node.to_owned(), low);
            }
        }
        if self.low[node] == self.index[node] {
            let mut component = BTreeSet::new();
            while let Some(top) = self.stack.pop() {
                self.on_stack.remove(&top);
                let done = top == node;
                component.insert(top);
                if done {
                    break;
                }
            }
            out.push(component);
        }
    }
}

/// A shortest circle through `start`, found by a breadth-first search
/// inside its component.
fn circle_in(graph: &Graph, component: &BTreeSet<String>, start: &str) -> Vec<String> {
    let start = start.to_owned();
    let mut came_from: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.clone()]);
    while let Some(node) = queue.pop_front() {
        for to in graph.get(&node).into_iter().flat_map(|t| t.keys()) {
            if !component.contains(to) {
                continue;
            }
            if *to == start {
                let mut back = vec![node.clone()];
                while *back.last().unwrap() != start {
                    back.push(came_from[back.last().unwrap()].clone());
                }
                back.reverse();
                back.push(start);
                return back;
            }
            if !came_from.contains_key(to) {
                came_from.insert(to.clone(), node.clone());
                queue.push_back(to.clone());
            }
        }
    }
    unreachable!("a strongly connected component has a circle through each member")
}

/// "import circle: a -> b -> a", then each edge with the files naming it.
fn describe(graph: &Graph, circle: &[String]) -> String {
    let mut text = format!("import circle: {}", circle.join(" -> "));
    for pair in circle.windows(2) {
        let files: Vec<&str> = graph[&pair[0]][&pair[1]]
            .iter()
            .map(String::as_str)
            .collect();
        text.push_str(&format!(
            "\n  {} -> {} ({})",
            pair[0],
            pair[1],
            files.join(", ")
        ));
    }
    text
}
