//! Julia cannot be installed on this project's machines, so the Julia package
//! (`julia/`) is checked statically against `include/academy.h`:
//! - every `ccall((:name, lib), Ret, (Args...), args...)` in `julia/src/*.jl`
//!   names a function of the header, passes as many arguments as it takes,
//!   and gives each argument and the return a Julia type of the C type's
//!   kind (see `matches`);
//! - `CEvent` and `CNDArray`, the Julia mirrors of `struct academy_event`
//!   and `struct academy_ndarray`, have the header's fields in the header's
//!   order, each of a matching kind;
//! - `julia/src/constants.jl` is what the header's enums and version macros
//!   generate (regenerate with `ACADEMY_BLESS=1 cargo test --release --test julia_static`).
//!
//! The `catches_*` tests feed the checker wrong Julia text and assert that it
//! reports it.

use std::collections::BTreeMap;
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn header_text() -> String {
    std::fs::read_to_string(repo().join("include/academy.h")).expect("include/academy.h")
}

// ---------------------------------------------------------------- C side --

/// The kind of a C type, as far as the calling convention cares.
#[derive(Debug, Clone, PartialEq)]
enum CType {
    Void,
    Int,    // int and every enum
    Bool,   // bool
    Double, // double
    U64,    // uint64_t
    U8,     // uint8_t
    Size,   // size_t
    Char,   // char (a string behind a pointer; by value, one byte)
    /// A struct the header defines (`academy_event`, `academy_ndarray`), by name.
    Struct(String),
    /// An opaque struct (handles), by name.
    Opaque(String),
    /// A function pointer typedef (`academy_*_fn`).
    FnPtr,
    Ptr(Box<CType>),
}

#[derive(Debug)]
struct Prototype {
    ret: CType,
    params: Vec<CType>,
}

/// Removes `/* */` and `//` comments and preprocessor lines.
fn strip_c(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        rest = rest[i..].find("*/").map_or("", |j| &rest[i + j + 2..]);
    }
    out.push_str(rest);
    out.lines()
        .map(|l| l.split("//").next().unwrap())
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

fn c_type(text: &str, header: &Header) -> Result<CType, String> {
    let stars = text.matches('*').count();
    let cleaned = text.replace('*', " ");
    let words: Vec<&str> = cleaned
        .split_whitespace()
        .filter(|w| *w != "const")
        .collect();
    let base = match words.as_slice() {
        ["void"] => CType::Void,
        ["int"] | ["enum", _] => CType::Int,
        ["bool"] => CType::Bool,
        ["double"] => CType::Double,
        ["uint64_t"] => CType::U64,
        ["uint8_t"] => CType::U8,
        ["size_t"] => CType::Size,
        ["char"] => CType::Char,
        ["struct", name] if header.structs.contains_key(*name) => CType::Struct(name.to_string()),
        ["struct", name] => CType::Opaque(name.to_string()),
        [name] if name.ends_with("_fn") => CType::FnPtr,
        _ => return Err(format!("unknown C type `{text}`")),
    };
    Ok((0..stars).fold(base, |t, _| CType::Ptr(Box::new(t))))
}

/// The header's parts that the Julia package depends on.
struct Header {
    functions: BTreeMap<String, Prototype>,
    /// Struct name → fields (name, C type text), in order.
    structs: BTreeMap<String, Vec<(String, String)>>,
    /// Enum name → (constant, value), in order.
    enums: Vec<(String, Vec<(String, i64)>)>,
    version: (i64, i64, i64),
}

/// Splits `type name` (a declaration) into its type text and name.
fn declaration(decl: &str) -> (String, String) {
    let decl = decl.trim();
    let at = decl
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    (decl[..at].trim().to_owned(), decl[at..].to_owned())
}

fn parse_header(text: &str) -> Header {
    let code = strip_c(text);
    let mut header = Header {
        functions: BTreeMap::new(),
        structs: BTreeMap::new(),
        enums: Vec::new(),
        version: (0, 0, 0),
    };
    // Struct bodies and enum bodies: `typedef (struct|enum) NAME { ... } NAME;`
    let mut rest = code.as_str();
    while let Some(i) = rest.find("typedef ") {
        rest = &rest[i + 8..];
        let Some(open) = rest.find('{') else { break };
        let head: Vec<&str> = rest[..open].split_whitespace().collect();
        if head.len() != 2 || rest[..open].contains(';') {
            continue;
        }
        let close = rest.find('}').expect("a closing brace");
        let body = &rest[open + 1..close];
        match head[0] {
            "struct" => {
                let fields = body
                    .split(';')
                    .filter(|f| !f.trim().is_empty())
                    .map(|f| {
                        let (ty, name) = declaration(f);
                        (name, ty)
                    })
                    .collect();
                header.structs.insert(head[1].to_owned(), fields);
            }
            "enum" => {
                let mut next = 0;
                let values = body
                    .split(',')
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| {
                        let mut parts = v.split('=');
                        let name = parts.next().unwrap().trim().to_owned();
                        if let Some(value) = parts.next() {
                            next = value.trim().parse().expect("an enum value");
                        }
                        next += 1;
                        (name, next - 1)
                    })
                    .collect();
                header.enums.push((head[1].to_owned(), values));
            }
            _ => {}
        }
        rest = &rest[close..];
    }
    // Prototypes: `ret name(params);`, outside braces.
    for statement in code.split(';') {
        let statement = statement.rsplit(['{', '}']).next().unwrap().trim();
        let statement = statement.trim_start_matches("extern \"C\"").trim();
        // An ACADEMY_DEPRECATED("note") attribute before a prototype.
        let statement = match statement.strip_prefix("ACADEMY_DEPRECATED") {
            Some(rest) => {
                let note = balanced(rest, 0).unwrap_or("");
                rest[note.len() + 2..].trim()
            }
            None => statement,
        };
        if statement.starts_with("typedef") {
            continue;
        }
        let Some(open) = statement.find('(') else {
            continue;
        };
        if !statement.ends_with(')') {
            continue;
        }
        let (ret, name) = declaration(&statement[..open]);
        if !name.starts_with("academy_") {
            continue;
        }
        let params = statement[open + 1..statement.len() - 1].trim();
        let params = if params == "void" || params.is_empty() {
            Vec::new()
        } else {
            params
                .split(',')
                .map(|p| {
                    c_type(&declaration(p).0, &header).unwrap_or_else(|e| panic!("{name}: {e}"))
                })
                .collect()
        };
        let ret = c_type(&ret, &header).unwrap_or_else(|e| panic!("{name}: {e}"));
        header.functions.insert(name, Prototype { ret, params });
    }
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("#define") {
            let (name, value) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let value = value.parse().unwrap_or(-1);
            match name {
                "ACADEMY_VERSION_MAJOR" => header.version.0 = value,
                "ACADEMY_VERSION_MINOR" => header.version.1 = value,
                "ACADEMY_VERSION_PATCH" => header.version.2 = value,
                _ => {}
            }
        }
    }
    header
}

// ------------------------------------------------------------ Julia side --

/// A Julia type expression: a name with type parameters (`Ptr{Ptr{UInt8}}`).
#[derive(Debug, PartialEq)]
struct JType {
    name: String,
    params: Vec<JType>,
}

fn julia_type(text: &str) -> Result<JType, String> {
    let text = text.trim();
    match text.find('{') {
        None if !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '.') =>
        {
            Ok(JType {
                name: text.to_owned(),
                params: Vec::new(),
            })
        }
        Some(i) if text.ends_with('}') => Ok(JType {
            name: text[..i].trim().to_owned(),
            params: split_top(&text[i + 1..text.len() - 1])
                .iter()
                .map(|p| julia_type(p))
                .collect::<Result<_, _>>()?,
        }),
        _ => Err(format!("cannot read the Julia type `{text}`")),
    }
}

/// Splits `text` at its top-level commas (outside brackets and strings).
fn split_top(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let (mut depth, mut start, mut in_string, mut escaped) = (0i32, 0, false, false);
    for (i, c) in text.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(text[start..i].trim().to_owned());
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = text[start..].trim();
    if !last.is_empty() {
        parts.push(last.to_owned());
    }
    parts
}

/// The text between the bracket at `open` and its match.
fn balanced(text: &str, open: usize) -> Option<&str> {
    let (mut depth, mut in_string, mut escaped) = (0i32, false, false);
    for (i, c) in text[open..].char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[open + 1..open + i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// Drops `#` comments (outside strings) so that prose mentioning ccall is not read as code.
fn strip_julia_comments(text: &str) -> String {
    text.lines()
        .map(|line| {
            let (mut in_string, mut escaped) = (false, false);
            for (i, c) in line.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' if in_string => escaped = true,
                    '"' => in_string = !in_string,
                    '#' if !in_string => return &line[..i],
                    _ => {}
                }
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One problem found, with where.
type Problems = Vec<String>;

/// Does the Julia type `j` pass or return the C type `c` correctly?
fn matches(c: &CType, j: &JType, mirrors: &BTreeMap<String, String>) -> bool {
    let plain = |names: &[&str]| j.params.is_empty() && names.contains(&j.name.as_str());
    let pointee = || (j.name == "Ptr" || j.name == "Ref") && j.params.len() == 1;
    match c {
        CType::Void => plain(&["Cvoid", "Nothing"]),
        CType::Int => plain(&["Cint", "Int32"]),
        CType::Bool => plain(&["Bool"]),
        CType::Double => plain(&["Cdouble", "Float64"]),
        CType::U64 => plain(&["UInt64", "Culonglong"]),
        CType::U8 => plain(&["UInt8"]),
        CType::Size => plain(&["Csize_t"]),
        // A char by value (`kind`, `order`): one byte of either sign.
        CType::Char => plain(&["Cchar", "UInt8", "Int8"]),
        // Callbacks go as plain pointers.
        CType::FnPtr => j.name == "Ptr" && j.params.len() == 1 && plain_of(&j.params[0], "Cvoid"),
        CType::Struct(_) | CType::Opaque(_) => false,
        CType::Ptr(inner) => match inner.as_ref() {
            CType::Char => {
                plain(&["Cstring"])
                    || (j.name == "Ptr" && j.params.len() == 1 && {
                        let p = &j.params[0];
                        p.params.is_empty()
                            && ["UInt8", "Cchar", "Cuchar"].contains(&p.name.as_str())
                    })
            }
            // Handles and void * go as plain pointers.
            CType::Opaque(_) | CType::Void => {
                j.name == "Ptr" && j.params.len() == 1 && plain_of(&j.params[0], "Cvoid")
            }
            CType::Struct(name) => {
                j.name == "Ptr"
                    && j.params.len() == 1
                    && (plain_of(&j.params[0], "Cvoid")
                        || (mirrors.get(&j.params[0].name) == Some(name)
                            && j.params[0].params.is_empty()))
            }
            other => pointee() && matches(other, &j.params[0], mirrors),
        },
    }
}

fn plain_of(j: &JType, name: &str) -> bool {
    j.name == name && j.params.is_empty()
}

/// Checks every ccall of `source` (named `file` in reports) against the header.
fn check_ccalls(
    file: &str,
    source: &str,
    header: &Header,
    mirrors: &BTreeMap<String, String>,
) -> (usize, Problems) {
    let code = strip_julia_comments(source);
    let mut problems = Vec::new();
    let mut count = 0;
    for (at, _) in code.match_indices("ccall") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '@') {
            if before == Some('@') {
                problems.push(format!(
                    "{file}: use ccall((:name, lib), ...), not @ccall (the check reads ccall only)"
                ));
            }
            continue;
        }
        let line = code[..at].lines().count();
        let where_ = format!("{file}:{line}");
        let open = at + "ccall".len();
        if !code[open..].starts_with('(') {
            continue;
        }
        count += 1;
        let Some(inner) = balanced(&code, open) else {
            problems.push(format!("{where_}: unbalanced ccall"));
            continue;
        };
        let parts = split_top(inner);
        if parts.len() < 3 {
            problems.push(format!(
                "{where_}: ccall without (name, lib), return type and argument types"
            ));
            continue;
        }
        let target = parts[0].trim();
        let name = target
            .strip_prefix('(')
            .and_then(|t| t.strip_suffix(')'))
            .map(split_top)
            .filter(|p| p.len() == 2 && p[1] == "lib" && p[0].starts_with(':'))
            .map(|p| p[0][1..].to_owned());
        let Some(name) = name else {
            problems.push(format!(
                "{where_}: the ccall's target is not (:academy_name, lib): `{target}`"
            ));
            continue;
        };
        let Some(proto) = header.functions.get(&name) else {
            problems.push(format!(
                "{where_}: {name} is not a function of include/academy.h"
            ));
            continue;
        };
        let types_text = parts[2].trim();
        let Some(types_inner) = types_text
            .strip_prefix('(')
            .and_then(|t| t.strip_suffix(')'))
        else {
            problems.push(format!(
                "{where_}: {name}: argument types are not a tuple: `{types_text}`"
            ));
            continue;
        };
        let types = split_top(types_inner);
        let args = parts.len() - 3;
        if types.len() != proto.params.len() {
            problems.push(format!(
                "{where_}: {name} takes {} arguments in the header, the ccall declares {}",
                proto.params.len(),
                types.len()
            ));
        }
        if args != types.len() {
            problems.push(format!(
                "{where_}: {name}: {} argument types but {args} arguments",
                types.len()
            ));
        }
        let mut check = |what: String, c: &CType, text: &str| match julia_type(text) {
            Ok(j) if matches(c, &j, mirrors) => {}
            Ok(_) => problems.push(format!(
                "{where_}: {name}: {what} is C {c:?}, but Julia `{text}`"
            )),
            Err(e) => problems.push(format!("{where_}: {name}: {what}: {e}")),
        };
        check("the return".into(), &proto.ret, &parts[1]);
        for (i, (c, j)) in proto.params.iter().zip(&types).enumerate() {
            check(format!("argument {}", i + 1), c, j);
        }
    }
    (count, problems)
}

/// The fields (name, type text) of `struct NAME ... end` in Julia source.
fn julia_struct(source: &str, name: &str) -> Option<Vec<(String, String)>> {
    let code = strip_julia_comments(source);
    let start = code.find(&format!("struct {name}\n"))?;
    let body = &code[start..];
    let end = body.find("\nend")?;
    Some(
        body[..end]
            .lines()
            .skip(1)
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (field, ty) = l.split_once("::").unwrap_or((l, ""));
                (field.trim().to_owned(), ty.trim().to_owned())
            })
            .collect(),
    )
}

/// Checks the Julia mirror `julia_name` of the header's struct `c_name`.
fn check_mirror(
    source: &str,
    julia_name: &str,
    c_name: &str,
    header: &Header,
    mirrors: &BTreeMap<String, String>,
) -> Problems {
    let Some(fields) = julia_struct(source, julia_name) else {
        return vec![format!("no `struct {julia_name}` (the mirror of {c_name})")];
    };
    let c_fields = &header.structs[c_name];
    let mut problems = Vec::new();
    if fields.len() != c_fields.len() {
        problems.push(format!(
            "{julia_name} has {} fields, {c_name} has {}",
            fields.len(),
            c_fields.len()
        ));
    }
    for (i, ((jn, jt), (cn, ct))) in fields.iter().zip(c_fields).enumerate() {
        let c = c_type(ct, header).expect("a C field type");
        // Fields are stored, not passed: a pointer field must be Ptr (never Ref or Cstring).
        let ok = match julia_type(jt) {
            Ok(j) => matches(&c, &j, mirrors) && j.name != "Ref" && j.name != "Cstring",
            Err(_) => false,
        };
        if jn != cn || !ok {
            problems.push(format!(
                "{julia_name} field {}: Julia `{jn}::{jt}`, C `{ct} {cn}`",
                i + 1
            ));
        }
    }
    problems
}

/// The Julia mirrors of the header's structs: Julia name → C name.
fn mirrors() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("CEvent".to_owned(), "academy_event".to_owned()),
        ("CNDArray".to_owned(), "academy_ndarray".to_owned()),
    ])
}

fn julia_sources() -> Vec<(String, String)> {
    let dir = repo().join("julia/src");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("julia/src")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jl"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                format!("julia/src/{}", p.file_name().unwrap().to_string_lossy()),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

/// `julia/src/constants.jl` as the header generates it.
fn constants_jl(header: &Header) -> String {
    let mut out = String::from(
        "# Generated from include/academy.h by tests/julia_static.rs; do not edit.\n\
         # Regenerate: ACADEMY_BLESS=1 cargo test --release --test julia_static\n\n",
    );
    let (major, minor, patch) = header.version;
    out.push_str(&format!("\"The header's version (ACADEMY_VERSION_*).\"\nconst ACADEMY_VERSION = v\"{major}.{minor}.{patch}\"\n"));
    for (name, values) in &header.enums {
        out.push_str(&format!("\n# enum {name}\n"));
        for (constant, value) in values {
            out.push_str(&format!("const {constant} = Cint({value})\n"));
        }
    }
    out
}

// ----------------------------------------------------------------- tests --

#[test]
fn every_ccall_matches_the_header() {
    let header = parse_header(&header_text());
    assert!(
        header.functions.len() > 50,
        "read only {} prototypes",
        header.functions.len()
    );
    let mut total = 0;
    let mut problems = Vec::new();
    let mut called = std::collections::BTreeSet::new();
    for (file, source) in julia_sources() {
        let (count, found) = check_ccalls(&file, &source, &header, &mirrors());
        total += count;
        problems.extend(found);
        for name in header.functions.keys() {
            if source.contains(&format!("(:{name}, lib)")) {
                called.insert(name.clone());
            }
        }
    }
    assert!(
        problems.is_empty(),
        "ccalls that do not match include/academy.h:\n{}",
        problems.join("\n")
    );
    // The completion-queue API is wrapped (issue 15).
    for name in [
        "academy_queue_new",
        "academy_queue_free",
        "academy_queue_fd",
        "academy_queue_poll",
        "academy_event_free",
        "academy_client_action_async",
        "academy_client_request_async",
        "academy_client_ping_async",
        "academy_client_listen",
        "academy_agent_serve_queue",
        "academy_reply_ok",
        "academy_reply_error",
        "academy_reply_cancelled",
        "academy_exchange_spawn",
        // Python values (julia/src/values.jl).
        "academy_json_get",
        "academy_ndarray_read",
        "academy_ndarray_free",
        "academy_ndarray_write",
        "academy_bytes_read",
        "academy_bytes_free",
        "academy_bytes_write",
    ] {
        assert!(
            called.contains(name),
            "the Julia package does not call {name}"
        );
    }
    eprintln!("{total} ccalls of {} functions checked", called.len());
}

#[test]
fn the_event_mirror_matches_the_header() {
    let header = parse_header(&header_text());
    assert_eq!(
        header.structs["academy_event"].len(),
        10,
        "{:?}",
        header.structs["academy_event"]
    );
    let source = std::fs::read_to_string(repo().join("julia/src/Academy.jl")).unwrap();
    let problems = check_mirror(&source, "CEvent", "academy_event", &header, &mirrors());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_ndarray_mirror_matches_the_header() {
    let header = parse_header(&header_text());
    assert_eq!(
        header.structs["academy_ndarray"].len(),
        8,
        "{:?}",
        header.structs["academy_ndarray"]
    );
    let source = std::fs::read_to_string(repo().join("julia/src/values.jl")).unwrap();
    let problems = check_mirror(&source, "CNDArray", "academy_ndarray", &header, &mirrors());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The checker sees a mirror that would read the wrong bytes.
    for (what, from, to) in [
        (
            "kind and itemsize swapped",
            "    kind::Cchar\n    itemsize::Csize_t\n",
            "    itemsize::Csize_t\n    kind::Cchar\n",
        ),
        (
            "a narrower size",
            "    nbytes::Csize_t\n",
            "    nbytes::Cint\n",
        ),
        (
            "a string field",
            "    dtype::Ptr{UInt8}\n",
            "    dtype::Cstring\n",
        ),
        ("a field missing", "    order::Cchar\n", ""),
    ] {
        assert!(
            source.contains(from),
            "{what}: the mirror no longer has `{from}`"
        );
        let wrong = source.replacen(from, to, 1);
        assert!(
            !check_mirror(&wrong, "CNDArray", "academy_ndarray", &header, &mirrors()).is_empty(),
            "{what} was not reported"
        );
    }
}

#[test]
fn the_constants_are_generated_from_the_header() {
    let header = parse_header(&header_text());
    let generated = constants_jl(&header);
    let path = repo().join("julia/src/constants.jl");
    if std::env::var_os("ACADEMY_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "julia/src/constants.jl is not what include/academy.h generates; \
         run ACADEMY_BLESS=1 cargo test --release --test julia_static"
    );
    assert!(
        generated.contains("const ACADEMY_ERR_TIMEOUT = Cint(2)\n"),
        "{generated}"
    );
    assert!(
        generated.contains("const ACADEMY_EVENT_ENDED = Cint(4)\n"),
        "{generated}"
    );
    // No status number is written by hand anywhere else in the package.
    let source = std::fs::read_to_string(repo().join("julia/src/Academy.jl")).unwrap();
    assert!(
        !source.contains("const ACADEMY_"),
        "Academy.jl defines ACADEMY_ constants itself"
    );
}

// The checker reports what it must: each wrong ccall below is caught.

fn problems_of(julia: &str) -> Problems {
    let header = parse_header(&header_text());
    check_ccalls("test.jl", julia, &header, &mirrors()).1
}

#[test]
fn catches_wrong_ccalls() {
    let right = "ccall((:academy_client_ping, lib), Cint, (Ptr{Cvoid}, Cstring, Cdouble, Ref{Cdouble}), c.ptr, id, t, rtt)";
    assert_eq!(problems_of(right), Vec::<String>::new());
    let wrong = [
        ("an unknown function", "ccall((:academy_client_pong, lib), Cint, (Ptr{Cvoid},), c)", "not a function"),
        (
            "a missing argument",
            "ccall((:academy_client_ping, lib), Cint, (Ptr{Cvoid}, Cstring, Cdouble), c.ptr, id, t)",
            "takes 4 arguments",
        ),
        (
            "types and arguments of different counts",
            "ccall((:academy_client_ping, lib), Cint, (Ptr{Cvoid}, Cstring, Cdouble, Ref{Cdouble}), c.ptr, id, t)",
            "but 3 arguments",
        ),
        (
            "an integer for a double",
            "ccall((:academy_client_ping, lib), Cint, (Ptr{Cvoid}, Cstring, Cint, Ref{Cdouble}), c.ptr, id, t, rtt)",
            "argument 3",
        ),
        (
            "a pointer to the wrong width",
            "ccall((:academy_client_ping, lib), Cint, (Ptr{Cvoid}, Cstring, Cdouble, Ref{Cint}), c.ptr, id, t, rtt)",
            "argument 4",
        ),
        (
            "a string for a handle",
            "ccall((:academy_client_ping, lib), Cint, (Cstring, Cstring, Cdouble, Ref{Cdouble}), c.ptr, id, t, rtt)",
            "argument 1",
        ),
        (
            "a wrong return type",
            "ccall((:academy_client_ping, lib), Cvoid, (Ptr{Cvoid}, Cstring, Cdouble, Ref{Cdouble}), c.ptr, id, t, rtt)",
            "the return",
        ),
        (
            "Cint for a uint64_t token",
            "ccall((:academy_client_listen, lib), Cint, (Ptr{Cvoid}, Ptr{Cvoid}, Cint), c, q, t)",
            "argument 3",
        ),
        (
            "a value for an out-pointer",
            "ccall((:academy_queue_fd, lib), Cint, (Ptr{Cvoid}, Cint), q, fd)",
            "argument 2",
        ),
        (
            "a pointer to another struct for academy_event **",
            "ccall((:academy_queue_poll, lib), Cint, (Ptr{Cvoid}, Cdouble, Ref{Ptr{Event}}), q, 0.0, out)",
            "argument 3",
        ),
        (
            "Cint for a char",
            "ccall((:academy_ndarray_write, lib), Cint, (Cstring, Csize_t, Ptr{Csize_t}, Cint, Ptr{Cvoid}, Ref{Ptr{UInt8}}), d, n, s, o, p, out)",
            "argument 4",
        ),
        (
            "the event's mirror for academy_ndarray **",
            "ccall((:academy_ndarray_read, lib), Cint, (Cstring, Cstring, Ref{Ptr{CEvent}}), j, p, out)",
            "argument 3",
        ),
        (
            "Int8 for a uint8_t pointer",
            "ccall((:academy_bytes_free, lib), Cvoid, (Ptr{Int8}, Csize_t), d, n)",
            "argument 1",
        ),
        ("a target that is not (:name, lib)", "ccall(:academy_version, Cstring, ())", "not (:academy_name, lib)"),
        ("@ccall", "@ccall lib.academy_version()::Cstring", "not @ccall"),
    ];
    for (what, julia, expected) in wrong {
        let problems = problems_of(julia);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{what} was not reported as `{expected}`: {problems:?}"
        );
    }
    // Comments are not code; calls spanning lines are read whole.
    assert!(problems_of("# ccall((:academy_nothing, lib), Cint, ())").is_empty());
    let multiline = "ccall((:academy_client_action_async, lib), Cint,\n  (Ptr{Cvoid}, Cstring, Cstring, Cstring, Cstring, Cdouble, Ptr{Cvoid}, UInt64),\n  c.ptr, id, \"a,b\", args, kwargs, t, q.ptr, token)";
    assert_eq!(problems_of(multiline), Vec::<String>::new());
}

#[test]
fn catches_a_wrong_event_mirror() {
    let header = parse_header(&header_text());
    let source = std::fs::read_to_string(repo().join("julia/src/Academy.jl")).unwrap();
    assert!(check_mirror(&source, "CEvent", "academy_event", &header, &mirrors()).is_empty());
    let broken = [
        (
            "token and status swapped",
            "    token::UInt64\n    status::Cint\n",
            "    status::Cint\n    token::UInt64\n",
        ),
        (
            "a field of the wrong width",
            "    token::UInt64\n",
            "    token::UInt32\n",
        ),
        (
            "a Ref field",
            "    reply::Ptr{Cvoid}\n",
            "    reply::Ref{Cvoid}\n",
        ),
        ("a field missing", "    rtt_s::Cdouble\n", ""),
    ];
    for (what, from, to) in broken {
        assert!(
            source.contains(from),
            "{what}: the mirror no longer has `{from}`"
        );
        let wrong = source.replacen(from, to, 1);
        assert!(
            !check_mirror(&wrong, "CEvent", "academy_event", &header, &mirrors()).is_empty(),
            "{what} was not reported"
        );
    }
}
