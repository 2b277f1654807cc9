//! The shape of the code, checked from its source as ARCHITECTURE.md states
//! it: which top-level modules import which (`use crate::…` and `crate::…`
//! paths outside comments and tests), the cycles among them, the binary's
//! size and the longest functions.
//!
//! The cycles and the long functions that remain are listed here by name. A
//! new one fails the test; so does one that is gone and still listed, so the
//! lists only shrink. `cargo test --test it architecture -- --nocapture`
//! prints the whole import graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules that still import each other in a cycle, by pair:
/// each is one edge of a cycle to break (see ARCHITECTURE.md, "Import
/// graph"). Written `from -> to`.
const KNOWN_CYCLE_EDGES: &[&str] = &[];

/// Non-test functions longer than [`LONGEST`] lines, by `file::name`.
const KNOWN_LONG_FUNCTIONS: &[&str] = &[];

/// The longest a function may be, in lines.
const LONGEST: usize = 120;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A file's code: up to its `#[cfg(test)]` module, without comment lines.
fn code(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    if path.to_string_lossy().ends_with("_tests.rs") {
        return Vec::new();
    }
    text.lines()
        .take_while(|l| !l.starts_with("#[cfg(test)]"))
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(str::to_string)
        .collect()
}

struct Crate {
    root: PathBuf,
    files: Vec<PathBuf>,
}

impl Crate {
    fn read() -> Crate {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        sources(&root.join("src"), &mut files);
        files.sort();
        Crate { root, files }
    }

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// `from -> to` for every top-level module and what it names.
    fn imports(&self) -> BTreeMap<String, BTreeSet<String>> {
        let src = self.root.join("src");
        let modules: BTreeSet<String> = self.files.iter().map(|f| top_module(&src, f)).collect();
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in &self.files {
            let from = top_module(&src, file);
            if from == "lib" || from == "main" {
                continue;
            }
            for line in code(file) {
                let mut rest = line.as_str();
                while let Some(at) = rest.find("crate::") {
                    rest = &rest[at + "crate::".len()..];
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if name != from && modules.contains(&name) {
                        graph.entry(from.clone()).or_default().insert(name);
                    }
                }
            }
        }
        graph
    }
}

fn top_module(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap();
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

/// The edges that lie on a cycle: `a -> b` where `b` reaches `a` back.
fn cycle_edges(graph: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    let reaches = |from: &str, to: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(node) = stack.pop() {
            if node == to {
                return true;
            }
            if seen.insert(node.clone()) {
                stack.extend(graph.get(&node).into_iter().flatten().cloned());
            }
        }
        false
    };
    graph
        .iter()
        .flat_map(|(a, tos)| tos.iter().map(move |b| (a, b)))
        .filter(|(a, b)| reaches(b, a))
        .map(|(a, b)| format!("{a} -> {b}"))
        .collect()
}

#[test]
fn no_new_import_cycle_between_top_level_modules() {
    let krate = Crate::read();
    let graph = krate.imports();
    for (from, tos) in &graph {
        println!(
            "{from} -> {}",
            tos.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let found = cycle_edges(&graph);
    let known: BTreeSet<String> = KNOWN_CYCLE_EDGES.iter().map(|s| s.to_string()).collect();
    let new: Vec<_> = found.difference(&known).collect();
    let gone: Vec<_> = known.difference(&found).collect();
    assert!(
        new.is_empty(),
        "new import cycle edges (break them, see ARCHITECTURE.md): {new:?}"
    );
    assert!(
        gone.is_empty(),
        "these edges no longer lie on a cycle: take them out of KNOWN_CYCLE_EDGES: {gone:?}"
    );
}

#[test]
fn the_binary_is_thin_and_functions_are_short() {
    let krate = Crate::read();
    let main = std::fs::read_to_string(krate.root.join("src/main.rs")).unwrap();
    assert!(main.lines().count() <= 250, "src/main.rs is over 250 lines");
    let mut long = BTreeSet::new();
    for file in &krate.files {
        let lines = code(file);
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let words: Vec<&str> = trimmed.split_whitespace().collect();
            let Some(at) = words.iter().position(|w| *w == "fn") else {
                continue;
            };
            let before_ok = words[..at]
                .iter()
                .all(|w| w.starts_with("pub") || matches!(*w, "async" | "const" | "unsafe"));
            if !before_ok || trimmed.ends_with(';') {
                continue;
            }
            let name: String = words[at + 1]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let indent = line.len() - trimmed.len();
            let end = lines[i + 1..]
                .iter()
                .position(|l| {
                    l.starts_with(&format!("{}}}", " ".repeat(indent)))
                        && l.len() - l.trim_start().len() == indent
                })
                .map_or(lines.len(), |n| i + 1 + n);
            if end - i + 1 > LONGEST {
                long.insert(format!("{}::{name}", krate.relative(file)));
            }
        }
    }
    let known: BTreeSet<String> = KNOWN_LONG_FUNCTIONS.iter().map(|s| s.to_string()).collect();
    let new: Vec<_> = long.difference(&known).collect();
    let gone: Vec<_> = known.difference(&long).collect();
    assert!(
        new.is_empty(),
        "functions over {LONGEST} lines: split them: {new:?}"
    );
    assert!(
        gone.is_empty(),
        "these are no longer over {LONGEST} lines: take them out of KNOWN_LONG_FUNCTIONS: {gone:?}"
    );
}
