//! Cargo.toml's `rust-version` is the real minimum Rust: the highest
//! `rust-version` of the crates Cargo.lock resolves to for this platform
//! (what `cargo build` and `cargo test` compile), as `cargo metadata`
//! reports them. When an update of Cargo.lock raises it, this test fails
//! until Cargo.toml, the README and the Spack recipe say so.

use std::process::Command;

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// "1.89" or "1.89.0" as (1, 89, 0).
fn version(text: &str) -> (u64, u64, u64) {
    let mut parts = text.split('.').map(|p| p.parse::<u64>().unwrap());
    let mut next = || parts.next().unwrap_or(0);
    (next(), next(), next())
}

#[test]
fn cargo_toml_states_the_rust_version_the_locked_crates_need() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let host = output(Command::new("rustc").arg("-vV"))
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let metadata = output(
        Command::new(cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--locked",
                "--filter-platform",
            ])
            .arg(&host)
            .current_dir(repo),
    );
    let metadata: serde_json::Value = serde_json::from_str(&metadata).unwrap();
    let root = metadata["resolve"]["root"].as_str().unwrap();
    let resolved: Vec<&str> = metadata["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    let (needed, by) = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["id"] != root && resolved.contains(&p["id"].as_str().unwrap()))
        .filter_map(|p| {
            let v = p["rust_version"].as_str()?;
            Some((version(v), format!("{} {}", p["name"], p["version"])))
        })
        .max()
        .unwrap();

    let manifest: toml::Table = std::fs::read_to_string(format!("{repo}/Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let ours = manifest["package"]["rust-version"].as_str().unwrap();
    assert_eq!(
        version(ours),
        needed,
        "Cargo.toml says rust-version = {ours:?}, but {by} needs {needed:?}"
    );
}
