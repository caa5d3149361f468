//! The layering the crates are built on, checked on their sources: within each crate the
//! top-level modules depend on one another without a circle, so each can be read (and
//! tested) on top of the ones below it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The top-level module a file belongs to: `lifecycle` for `lifecycle.rs` and for
/// everything under `lifecycle/`; `None` for the crate root and binaries.
fn module_of(root: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(root).unwrap();
    let first = relative
        .components()
        .next()?
        .as_os_str()
        .to_str()?
        .to_owned();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => None,
        Some(name) => Some(name.to_owned()),
        None if first == "bin" => None,
        None => Some(first),
    }
}

/// Which top-level modules each module names through `crate::`, tests left out (a test
/// may reach anywhere).
fn dependencies(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files = sources(root);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(root, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(root, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        if file.file_stem().is_some_and(|s| s == "tests") {
            continue;
        }
        // Comments (and the doc links in them) are not dependencies.
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let uses = graph.entry(module.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            // `crate::{a, b::c}` names several at once.
            let named: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .collect(),
                None => vec![rest],
            };
            for name in named {
                let name: String = name
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name != module && modules.contains(&name) {
                    uses.insert(name);
                }
            }
        }
    }
    graph
}

/// A circle in the graph, as the path that closes it, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut found = path[start..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn crate_dir(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

#[test]
fn the_cores_modules_form_no_circle() {
    let graph = dependencies(&crate_dir("src"));
    assert!(graph.contains_key("lifecycle") && graph.contains_key("execution"));
    if let Some(found) = circle(&graph) {
        panic!(
            "core modules depend on each other in a circle: {}",
            found.join(" -> ")
        );
    }
}

#[test]
fn the_operators_modules_form_no_circle() {
    let graph = dependencies(&crate_dir("../src"));
    assert!(graph.contains_key("controller") && graph.contains_key("audit"));
    if let Some(found) = circle(&graph) {
        panic!(
            "operator modules depend on each other in a circle: {}",
            found.join(" -> ")
        );
    }
}

#[test]
fn the_state_machines_only_meet_through_events_and_answers() {
    let graph = dependencies(&crate_dir("src"));
    for (a, b) in [("lifecycle", "execution"), ("execution", "lifecycle")] {
        assert!(
            !graph[a].contains(b),
            "{a} depends on {b}; what both need belongs in events or answers"
        );
    }
    for leaf in ["events", "answers"] {
        for machine in ["lifecycle", "execution"] {
            assert!(
                !graph[leaf].contains(machine),
                "{leaf} depends on {machine}, which builds on it"
            );
        }
    }
}

#[test]
fn a_circle_is_found_and_named() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(circle(&graph).unwrap(), ["a", "b", "c", "a"]);
    let mut open = graph.clone();
    open.get_mut("c").unwrap().clear();
    assert_eq!(circle(&open), None);
}

#[test]
fn the_core_cannot_reach_a_cluster() {
    let manifest = std::fs::read_to_string(crate_dir("Cargo.toml")).unwrap();
    let mut section = "";
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section != "[dependencies]" {
            continue;
        }
        let name = line.split(['=', ' ']).next().unwrap_or_default();
        for forbidden in [
            "kube",
            "kube-client",
            "kube-runtime",
            "tokio",
            "hyper",
            "reqwest",
            "tower",
        ] {
            assert_ne!(
                name, forbidden,
                "the core depends on {forbidden}: what reaches the cluster belongs in the operator crate"
            );
        }
    }
}
