//! ARCHITECTURE.md stays true to the code: it names every source file, and no source file
//! imports another that (directly or through others) imports it back. A new file without a
//! paragraph in the code map, or an import that closes a cycle, fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under src/, as paths relative to it (`agents/launch.rs`).
fn source_files() -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(base).unwrap();
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(&src(), &src(), &mut out);
    out.sort();
    out
}

/// The code map's entry for a top-level module: from its bullet (`- **`agents/`**`, or
/// `**`daemon.rs`**` within a bullet) to the next top-level bullet.
fn entry<'a>(map: &'a str, name: &str) -> Option<&'a str> {
    let start = map.find(&format!("**`{name}`**"))?;
    let rest = &map[start..];
    let end = rest.find("\n- **").unwrap_or(rest.len());
    Some(&rest[..end])
}

#[test]
fn the_code_map_names_every_source_file() {
    let map =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
            .unwrap();
    let map = &map[map.find("## Code map").expect("a code map section")..];
    let missing: Vec<String> = source_files()
        .into_iter()
        .filter(|f| {
            let named = match f.split_once('/') {
                // A top-level file has an entry of its own.
                None => entry(map, f).is_some(),
                // A file in a folder is named in its folder's entry, by its path below the
                // folder (`adapters/`, `claude.rs`) or its full path.
                Some((dir, below)) => entry(map, &format!("{dir}/")).is_some_and(|e| {
                    let name = below.rsplit('/').next().unwrap();
                    let folder = below.rsplit_once('/').map(|(d, _)| format!("`{d}/`"));
                    e.contains(&format!("`{below}`"))
                        || e.contains(f.as_str())
                        || (folder.is_some_and(|d| e.contains(&d))
                            && e.contains(&format!("`{name}`")))
                }),
            };
            !named
        })
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's code map does not name: {missing:?}"
    );
}

/// The module path of a source file: `agents/mod.rs` is `agents`, `agents/launch.rs` is
/// `agents::launch`, `lib.rs` is the crate root.
fn module_of(file: &str) -> String {
    let path = file.trim_end_matches(".rs");
    let mut parts: Vec<&str> = path.split('/').collect();
    if parts.last() == Some(&"mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        return String::new();
    }
    parts.join("::")
}

/// The code of a file without its test module and comments (doc links name modules too).
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The paths (as lists of names) that follow each `prefix` in `code`, braces expanded one level:
/// `super::{a::B, c}` gives `[a, B]` and `[c]`.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        // Not the tail of a longer name (`xcrate::`).
        if code[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let names: Vec<String> = item
                    .trim()
                    .split("::")
                    .map(|n| ident_at(n.trim()).to_string())
                    .filter(|n| !n.is_empty())
                    .collect();
                if !names.is_empty() {
                    out.push(names);
                }
            }
        } else {
            let mut names = Vec::new();
            let mut r = rest;
            loop {
                let name = ident_at(r);
                if name.is_empty() {
                    break;
                }
                names.push(name.to_string());
                match r[name.len()..].strip_prefix("::") {
                    Some(next) => r = next,
                    None => break,
                }
            }
            if !names.is_empty() {
                out.push(names);
            }
        }
    }
    out
}

/// Which modules each module uses (through `crate::` or `super::`), among the crate's own.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let files = source_files();
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    let longest = |base: &[String], names: &[String]| -> Option<String> {
        (1..=names.len()).rev().find_map(|k| {
            let mut path = base.to_vec();
            path.extend_from_slice(&names[..k]);
            let candidate = path.join("::");
            modules.contains(&candidate).then_some(candidate)
        })
    };
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = module_of(file);
        let text = code(&std::fs::read_to_string(src().join(file)).unwrap());
        let mut uses = BTreeSet::new();
        for names in paths_after(&text, "crate::") {
            uses.extend(longest(&[], &names));
        }
        // `super` of `agents::launch` (agents/launch.rs) is `agents`; of `agents` (mod.rs), the
        // crate root.
        let mut parent: Vec<String> = module.split("::").map(String::from).collect();
        parent.pop();
        for names in paths_after(&text, "super::") {
            uses.extend(longest(&parent, &names));
        }
        uses.remove(&module);
        graph.insert(module, uses);
    }
    graph
}

#[test]
fn no_source_file_imports_one_that_imports_it_back() {
    let graph = imports();
    assert!(
        graph["agents::launch"].contains("agents::manager")
            && graph["mcp::tasks"].contains("services"),
        "the import scan sees known imports: {graph:?}"
    );
    // Depth-first search for a back edge; report the cycle it closes.
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = path[at..].iter().map(|n| n.to_string()).collect();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        let mut path = Vec::new();
        if let Some(cycle) = visit(node, &graph, &mut path, &mut done) {
            panic!("an import cycle: {}", cycle.join(" → "));
        }
    }
}
