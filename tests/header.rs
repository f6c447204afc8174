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
