//! The committed C header must be what cbindgen generates from the code now.
//! Regenerate it with `ACADEMY_BLESS=1 cargo test --test header`.

use std::path::PathBuf;

fn generate() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let bindings = cbindgen::Builder::new()
        .with_crate(&root)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
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
