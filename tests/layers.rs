//! The crate's folders are its layers: a module uses only the layers below
//! it, and no two modules use each other, directly or round a circle.
//!
//! Read from the source: every `crate::…`, `super::…` and child-module path
//! outside comments is an import of the module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. A module may use its own top-level module and
/// those of a lower rank, never a sibling of the same rank.
const RANKS: &[(&str, u32)] = &[
    ("error", 0),
    ("redact", 0),
    ("logging", 1),
    ("fork", 1),
    ("panics", 1),
    ("panics", 1),
    ("runtime", 2),
    ("wire", 3),
    ("options", 4),
    ("transport", 5),
    ("client", 6),
    ("server", 6),
    ("fuzzing", 7),
    ("ffi", 8),
    ("", 9), // lib.rs: re-exports
];

fn rank(top: &str) -> u32 {
    RANKS
        .iter()
        .find(|(name, _)| *name == top)
        .unwrap_or_else(|| panic!("module {top:?} has no layer in tests/layers.rs"))
        .1
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`; `src/lib.rs` is ``.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if !path.ends_with("bin") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments and without `#[cfg(test)] mod tests`.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|line| {
            let t = line.trim_start();
            if t.starts_with("//") {
                ""
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths `crate::a::b…` (or `super::…`, or a child module's) in `code`.
fn paths(module: &str, code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut found = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        if !ident(bytes[i]) || (i > 0 && (ident(bytes[i - 1]) || bytes[i - 1] == ':')) {
            i += 1;
            continue;
        }
        // A path starting here: idents joined by `::`.
        let mut parts = Vec::new();
        let mut j = i;
        loop {
            let start = j;
            while j < bytes.len() && ident(bytes[j]) {
                j += 1;
            }
            parts.push(bytes[start..j].iter().collect::<String>());
            if j + 2 < bytes.len() && bytes[j] == ':' && bytes[j + 1] == ':' && ident(bytes[j + 2])
            {
                j += 2;
            } else {
                break;
            }
        }
        i = j.max(i + 1);
        let mut base: Vec<String> = if module.is_empty() {
            Vec::new()
        } else {
            module.split("::").map(str::to_owned).collect()
        };
        let rest = match parts[0].as_str() {
            "crate" => {
                base.clear();
                &parts[1..]
            }
            "super" => {
                let mut k = 0;
                while parts.get(k).map(String::as_str) == Some("super") {
                    base.pop();
                    k += 1;
                }
                &parts[k..]
            }
            first if parts.len() > 1 && children.contains(first) => &parts[..],
            _ => continue,
        };
        base.extend(rest.iter().cloned());
        found.push(base);
    }
    found
}

#[test]
fn modules_use_only_lower_layers_and_no_module_circles() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut wrong_layer = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let children: BTreeSet<String> = modules
            .iter()
            .filter_map(|m| {
                let rest = if module.is_empty() {
                    Some(m.as_str())
                } else {
                    m.strip_prefix(&format!("{module}::"))
                };
                rest.filter(|r| !r.is_empty() && !r.contains("::"))
                    .map(str::to_owned)
            })
            .collect();
        let text = std::fs::read_to_string(file).unwrap();
        for path in paths(&module, &code(&text), &children) {
            // The deepest module the path names.
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].join("::"))
                .find(|m| modules.contains(m));
            let Some(target) = target else { continue };
            if target == module {
                continue;
            }
            let (from_top, to_top) = (top(&module), top(&target));
            if from_top != to_top && rank(to_top) >= rank(from_top) {
                wrong_layer.push(format!("{module} uses {target}"));
            }
            edges.entry(module.clone()).or_default().insert(target);
        }
    }
    assert!(
        wrong_layer.is_empty(),
        "imports that point up or sideways between layers:\n{}",
        wrong_layer.join("\n")
    );
    let circles = circles(&edges);
    assert!(
        circles.is_empty(),
        "modules that use each other:\n{}",
        circles.join("\n")
    );
    // The check sees the imports it must (a broken reader passes anything).
    assert!(edges["client"].contains("transport"), "{edges:?}");
    assert!(edges["transport::http1"].contains("transport::http1::pipeline"));
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or("")
}

/// Every circle in the graph, each written `a -> b -> a`.
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut found = Vec::new();
    for start in edges.keys() {
        // Depth-first from `start`, reporting paths that come back to it
        // through modules greater than it (each circle once).
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((at, path)) = stack.pop() {
            for next in edges.get(&at).into_iter().flatten() {
                if next == start {
                    found.push(format!("{} -> {start}", path.join(" -> ")));
                } else if next > start && seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    found
}

#[test]
fn the_reader_finds_circles_and_upward_imports() {
    let mut edges = BTreeMap::new();
    edges.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    edges.insert("b".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(circles(&edges), vec!["a -> b -> a".to_owned()]);
    let children = BTreeSet::from(["http1".to_owned()]);
    let found = paths(
        "transport",
        "use crate::wire::ids::EntityId;\nuse http1::Pool;\nsuper::x::y();",
        &children,
    );
    assert_eq!(
        found,
        vec![
            vec!["wire", "ids", "EntityId"],
            vec!["transport", "http1", "Pool"],
            vec!["x", "y"],
        ]
    );
}
