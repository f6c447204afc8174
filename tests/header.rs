//! The committed C header must be what cbindgen generates from the code now.
//! Regenerate it with `ACADEMY_BLESS=1 cargo test --test header`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The header cbindgen makes of `crate_dir` with our cbindgen.toml, written
/// to `out` (tools/gen-header, built on first use).
fn cbindgen(crate_dir: &Path, out: &Path) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(env!("CARGO"))
        .args(["run", "--release", "--quiet", "-p", "gen-header", "--"])
        .arg(crate_dir)
        .arg(root.join("cbindgen.toml"))
        .arg(out)
        .current_dir(&root)
        .status()
        .expect("cargo runs tools/gen-header");
    assert!(status.success(), "tools/gen-header failed");
}

fn generate() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join(format!("academy-header-{}.h", std::process::id()));
    cbindgen(&root, &out);
    let text = std::fs::read_to_string(&out).expect("the generated header");
    let _ = std::fs::remove_file(&out);
    text
}

#[test]
fn header_is_fresh() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include/academy.h");
    let generated = generate();
    if std::env::var_os("ACADEMY_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/academy.h");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/academy.h is stale: regenerate it with `ACADEMY_BLESS=1 cargo test --test header` and commit it"
    );
}

#[test]
fn version_macros_match_the_crate() {
    let header = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include/academy.h"),
    )
    .unwrap();
    for (name, value) in [
        ("ACADEMY_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("ACADEMY_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("ACADEMY_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        assert!(
            header.contains(&format!("#define {name} {value}\n")),
            "{name} must be {value} in the header"
        );
    }
}

/// A `#[deprecated]` export becomes `ACADEMY_DEPRECATED(...)` in a header
/// made with our cbindgen.toml, and a C compiler warns where it is used.
#[test]
fn deprecated_functions_warn_in_c() {
    let dir = std::env::temp_dir().join(format!("academy-deprecated-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"scratch\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[lib]\npath = \"src/lib.rs\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("src/lib.rs"),
        "/// Old.\n#[deprecated(note = \"use academy_new_thing\")]\n#[no_mangle]\npub extern \"C\" fn academy_old_thing() -> i32 { 1 }\n",
    )
    .unwrap();
    let header = dir.join("scratch.h");
    cbindgen(&dir, &header);
    let text = std::fs::read_to_string(&header).unwrap();
    assert!(
        text.contains("ACADEMY_DEPRECATED(\"use academy_new_thing\")"),
        "{text}"
    );
    std::fs::write(
        dir.join("use.c"),
        "#include \"scratch.h\"\nint main(void) { return academy_old_thing() - 1; }\n",
    )
    .unwrap();
    let out = std::process::Command::new("cc")
        .args(["-std=c11", "-Wall", "-c", "use.c", "-o", "use.o"])
        .current_dir(&dir)
        .output()
        .expect("cc");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("deprecated") && stderr.contains("use academy_new_thing"),
        "the compiler must warn: {stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// One function declaration of the header with the doc comment above it.
#[derive(Debug)]
struct Declaration {
    name: String,
    returns_void: bool,
    params: Vec<String>,
    doc: String,
}

/// The function declarations of a header (those inside `extern "C"`),
/// each with its `/** ... */` comment ("" when it has none).
fn declarations(header: &str) -> Vec<Declaration> {
    let body = header
        .split_once("extern \"C\" {")
        .map_or(header, |(_, rest)| rest);
    let mut found = Vec::new();
    let mut doc = String::new();
    let mut rest = body;
    loop {
        let rest_trimmed = rest.trim_start();
        if let Some(comment) = rest_trimmed.strip_prefix("/**") {
            let end = comment.find("*/").expect("a closed doc comment");
            doc = comment[..end].to_owned();
            rest = &comment[end + 2..];
        } else if rest_trimmed.starts_with("//") || rest_trimmed.starts_with('#') {
            let end = rest_trimmed.find('\n').unwrap_or(rest_trimmed.len());
            rest = &rest_trimmed[end..];
        } else if let Some(end) = rest_trimmed.find(';') {
            let decl = &rest_trimmed[..end];
            if rest_trimmed.starts_with('}') {
                break;
            }
            let open = decl.rfind('(').expect("a parameter list");
            let close = decl.rfind(')').expect("a parameter list");
            let head = &decl[..open];
            let name = head
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .rfind(|w| !w.is_empty())
                .unwrap_or_default()
                .to_owned();
            // `void academy_x(` but not `void *academy_x(` or `const void *`.
            let before_name = head[..head.rfind(&name).unwrap()].trim_end();
            let returns_void = before_name
                .rsplit(|c: char| c.is_whitespace() || c == ')')
                .next()
                == Some("void");
            let params = decl[open + 1..close]
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty() && *p != "void")
                .map(|p| {
                    p.rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .find(|w| !w.is_empty())
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect();
            found.push(Declaration {
                name,
                returns_void,
                params,
                doc: std::mem::take(&mut doc),
            });
            rest = &rest_trimmed[end + 1..];
        } else {
            break;
        }
    }
    found
}

/// What a function's doc comment lacks of the manual's fields: a summary,
/// `@param` for every parameter, `@return` unless it returns void, the
/// "Blocks:" and "Thread-safety:" lines in that order, and a group.
fn doc_problems(d: &Declaration) -> Vec<String> {
    let lines: Vec<&str> = d
        .doc
        .lines()
        .map(|l| l.trim().trim_start_matches('*').trim())
        .collect();
    let position = |pred: &dyn Fn(&str) -> bool| lines.iter().position(|l| pred(l));
    let mut problems = Vec::new();
    if lines.iter().all(|l| l.is_empty()) {
        return vec![format!("{}: no doc comment", d.name)];
    }
    if lines
        .iter()
        .find(|l| !l.is_empty())
        .unwrap()
        .starts_with('@')
    {
        problems.push(format!("{}: no summary line first", d.name));
    }
    let mut param_lines = Vec::new();
    for p in &d.params {
        let at = position(&|l: &str| {
            l.strip_prefix("@param")
                .map(|r| r.trim_start_matches(|c| c != ' ' && c != '\t'))
                .and_then(|r| r.split_whitespace().next())
                == Some(p.as_str())
        });
        match at {
            Some(at) => param_lines.push(at),
            None => problems.push(format!("{}: no `@param {p}`", d.name)),
        }
    }
    let ret = position(&|l: &str| l.starts_with("@return"));
    if !d.returns_void && ret.is_none() {
        problems.push(format!("{}: no `@return`", d.name));
    }
    if d.returns_void && ret.is_some() {
        problems.push(format!("{}: `@return` on a void function", d.name));
    }
    let blocks = position(&|l: &str| l.starts_with("Blocks:"));
    let threads = position(&|l: &str| l.starts_with("Thread-safety:"));
    if blocks.is_none() {
        problems.push(format!("{}: no \"Blocks:\" line", d.name));
    }
    if threads.is_none() {
        problems.push(format!("{}: no \"Thread-safety:\" line", d.name));
    }
    if !lines.iter().any(|l| l.starts_with("@ingroup ")) {
        problems.push(format!("{}: in no group (`@ingroup`)", d.name));
    }
    // The fields' order: parameters, return, Blocks, Thread-safety.
    let order: Vec<usize> = param_lines
        .iter()
        .copied()
        .chain(ret)
        .chain(blocks)
        .chain(threads)
        .collect();
    if order.windows(2).any(|w| w[0] > w[1]) {
        problems.push(format!(
            "{}: the fields are not in the order @param, @return, Blocks:, Thread-safety:",
            d.name
        ));
    }
    problems
}

#[test]
fn every_function_is_documented_as_a_manual_entry() {
    let header = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include/academy.h"),
    )
    .unwrap();
    let decls = declarations(&header);
    assert!(
        decls.len() >= 50,
        "the parser found only {} functions in the header",
        decls.len()
    );
    let groups: Vec<&str> = header
        .lines()
        .filter_map(|l| l.split("@defgroup ").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .collect();
    let mut problems: Vec<String> = decls.iter().flat_map(doc_problems).collect();
    for d in &decls {
        for line in d.doc.lines() {
            if let Some(group) = line.split("@ingroup ").nth(1) {
                let group = group.trim();
                if !groups.contains(&group) {
                    problems.push(format!("{}: group `{group}` is not defined", d.name));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems in include/academy.h's function docs (fix the doc comments in src/ffi/ and regenerate):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The check finds what is missing (so that it can fail).
#[test]
fn the_doc_check_finds_missing_fields() {
    let header = r#"
#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

/**
 * Does a thing.
 *
 * @param a the first.
 *
 * Blocks: no.
 */
enum academy_status academy_thing(const char *a, char **out_b);

/**
 * Frees a thing.
 *
 * @param t the thing.
 * @return nothing.
 *
 * Thread-safety: thread-safe.
 * Blocks: no.
 * @ingroup basics
 */
void academy_thing_free(struct academy_thing *t);

const char *academy_undocumented(void);

ACADEMY_DEPRECATED("use academy_thing") void *academy_ok(int n);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus
"#;
    let decls = declarations(header);
    let names: Vec<&str> = decls.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "academy_thing",
            "academy_thing_free",
            "academy_undocumented",
            "academy_ok"
        ]
    );
    assert_eq!(decls[0].params, ["a", "out_b"]);
    assert!(!decls[0].returns_void && decls[1].returns_void && !decls[3].returns_void);
    let problems: Vec<String> = decls.iter().flat_map(doc_problems).collect();
    let text = problems.join("\n");
    for want in [
        "academy_thing: no `@param out_b`",
        "academy_thing: no `@return`",
        "academy_thing: no \"Thread-safety:\" line",
        "academy_thing: in no group",
        "academy_thing_free: `@return` on a void function",
        "academy_thing_free: the fields are not in the order",
        "academy_undocumented: no doc comment",
        "academy_ok: no doc comment",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}
