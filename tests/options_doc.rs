//! The factory options are documented from one table (`src/options.rs`,
//! `academy::options::OPTIONS`): the README's table is made from it, and
//! the header and the Go binding must name the same options.
//! Regenerate the README's table with
//! `ACADEMY_BLESS=1 cargo test --release --test options_doc`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use academy::options::{options_markdown, OPTIONS};

const BEGIN: &str = "<!-- factory-options:begin -->\n";
const END: &str = "<!-- factory-options:end -->";

fn read(path: &str) -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

fn options_of(factory: &str) -> BTreeSet<&'static str> {
    OPTIONS
        .iter()
        .filter(|o| o.factories.contains(&factory))
        .map(|o| o.name)
        .collect()
}

#[test]
fn the_readme_table_is_made_from_the_options_table() {
    let readme = read("README.md");
    let start = readme.find(BEGIN).expect("README has the options markers") + BEGIN.len();
    let end = readme[start..].find(END).expect("the end marker") + start;
    let want = options_markdown();
    if std::env::var_os("ACADEMY_BLESS").is_some() {
        let updated = format!("{}{}{}", &readme[..start], want, &readme[end..]);
        std::fs::write(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md"),
            updated,
        )
        .unwrap();
        return;
    }
    assert_eq!(
        &readme[start..end],
        want,
        "README's options table is stale: ACADEMY_BLESS=1 cargo test --release --test options_doc"
    );
}

/// The doc comment above a function in the header.
fn header_doc(function: &str) -> String {
    let header = read("include/academy.h");
    let at = header
        .find(&format!(" {function}("))
        .unwrap_or_else(|| panic!("{function} is in the header"));
    let before = &header[..at];
    let start = before.rfind("/**").expect("a doc comment");
    before[start..].to_owned()
}

#[test]
fn the_header_names_every_option_of_each_factory() {
    for (factory, function) in [
        ("http", "academy_http_factory_new"),
        ("redis", "academy_redis_factory_new"),
    ] {
        let doc = header_doc(function);
        for name in options_of(factory) {
            assert!(
                doc.contains(&format!("`{name}`")),
                "{function}'s doc does not name `{name}`"
            );
        }
    }
}

#[test]
fn the_hybrid_factorys_doc_names_its_own_options() {
    let doc = header_doc("academy_hybrid_factory_new");
    for o in OPTIONS.iter().filter(|o| o.factories == ["hybrid"]) {
        assert!(
            doc.contains(&format!("`{}`", o.name)),
            "academy_hybrid_factory_new's doc does not name `{}`",
            o.name
        );
    }
    assert!(
        doc.contains("`academy_redis_factory_new`"),
        "it refers to the common options"
    );
}

#[test]
fn the_go_options_are_the_http_factory_options() {
    let go = read("go/academy.go");
    let start = go.find("type Options struct {").expect("go Options");
    let end = go[start..].find("\n}").unwrap() + start;
    let tags: BTreeSet<&str> = go[start..end]
        .split("json:\"")
        .skip(1)
        .map(|rest| rest.split([',', '"']).next().unwrap())
        .collect();
    assert_eq!(tags, options_of("http"));
}
