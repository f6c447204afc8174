//! The release tarball of `make dist` builds with no network, and a C
//! program runs after a plain `cargo build --release` of a fresh tree;
//! the Spack recipe declares what Cargo.toml says.
//!
//! The tarball is unpacked into target/dist-test/tree and built (cargo
//! offline, with an empty CARGO_HOME, so that only vendor/ can provide
//! crates) into the CARGO_TARGET_DIR target/dist-test/target, which is
//! kept between runs: the first run compiles every crate once, later runs
//! only the library. Then, with no `make` step, a C program is linked with
//! `-L<target>/release -lacademy` and runs; then `make run` in the tree
//! (the main job: a C user calls a C agent over the embedded exchange).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::{python, repo};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Built {
    /// The unpacked tarball.
    tree: PathBuf,
    /// Its CARGO_TARGET_DIR.
    target: PathBuf,
    /// An empty CARGO_HOME: no registry cache, no configuration.
    cargo_home: PathBuf,
}

impl Built {
    /// A command with the offline build's environment.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.tree)
            .env("CARGO_TARGET_DIR", &self.target)
            .env("CARGO_HOME", &self.cargo_home)
            .env("CARGO_NET_OFFLINE", "true")
            .env_remove("ACADEMY_EXCHANGE_URL");
        cmd
    }
}

/// `make dist`, unpacked and built offline with a plain `cargo build
/// --release`, once per test binary.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let work = repo().join("target/dist-test");
        let tarballs = work.join("out");
        let out = run(Command::new("make")
            .args(["-s", "dist"])
            .arg(format!("DISTDIR={}", tarballs.display()))
            .current_dir(repo()));
        let name = format!("academy-{}", env!("CARGO_PKG_VERSION"));
        let tarball = tarballs.join(format!("{name}.tar.gz"));
        assert!(out.contains(&tarball.display().to_string()), "{out}");
        assert!(out.contains("spack: version(\""), "{out}");

        let unpacked = work.join("tree");
        let _ = std::fs::remove_dir_all(&unpacked);
        std::fs::create_dir_all(&unpacked).unwrap();
        run(Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(&unpacked));
        let tree = unpacked.join(&name);
        // The tarball dates every file at the last commit. Cargo compares
        // source and output times, so: the vendored crates get a fixed old
        // date (their builds in target/dist-test/target stay fresh; a
        // changed Cargo.lock gives new crate versions, which are built), and
        // our files the time of unpacking (the library is always rebuilt
        // from this tree's sources).
        run(Command::new("find").arg(tree.join("vendor")).args([
            "-exec",
            "touch",
            "-h",
            "-d",
            "@946684800",
            "{}",
            "+",
        ]));
        run(Command::new("find")
            .arg(&tree)
            .arg("-path")
            .arg(tree.join("vendor"))
            .args(["-prune", "-o", "-exec", "touch", "-h", "{}", "+"]));
        let config = std::fs::read_to_string(tree.join(".cargo/config.toml")).unwrap();
        assert!(
            config.contains("replace-with = \"vendored-sources\"")
                && config.contains("directory = \"vendor\""),
            "{config}"
        );
        assert!(
            tree.join("vendor/serde/Cargo.toml").exists(),
            "crates are in vendor/"
        );
        assert!(
            !tree.join("target").exists(),
            "no build output in the tarball"
        );

        let cargo_home = work.join("empty-cargo-home");
        let _ = std::fs::remove_dir_all(&cargo_home);
        std::fs::create_dir_all(&cargo_home).unwrap();
        let built = Built {
            tree,
            target: work.join("target"),
            cargo_home,
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        run(built
            .command(cargo)
            .args(["build", "--release", "--offline", "--locked"]));
        built
    })
}

#[test]
fn a_c_program_runs_after_a_plain_cargo_build_of_a_fresh_tree() {
    let b = built();
    let release = b.target.join("release");
    let exe = b.target.join("version_check");
    // As the README says: -Iinclude -L<target>/release -lacademy, no make.
    run(b
        .command("cc")
        .args(["-Wall", "-Wextra", "-Werror", "-Iinclude"])
        .arg("examples-c/version_check.c")
        .arg("-L")
        .arg(&release)
        .args(["-lacademy", "-o"])
        .arg(&exe));
    let version = env!("CARGO_PKG_VERSION");
    let out = run(b.command(&exe).env("LD_LIBRARY_PATH", &release));
    assert_eq!(out, format!("header {version}, library {version}\n"));
}

#[test]
fn the_main_job_runs_from_the_offline_tarball() {
    let b = built();
    let out = run(b.command("make").args(["--no-print-directory", "run"]));
    assert!(out.contains("add(2, 3) = 5\n"), "{out}");
    assert!(
        out.contains("started academy-exchange at http://127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("add(40, 2) = 42\n"), "{out}");
}

#[test]
fn the_spack_recipe_follows_cargo_toml() {
    let out = run(Command::new(python())
        .arg(repo().join("tests/py/check_spack_recipe.py"))
        .arg(repo().join("packaging/spack/package.py")));
    let recipe: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(recipe["class"], "Academy");
    assert_eq!(recipe["bases"], serde_json::json!(["MakefilePackage"]));
    assert_eq!(recipe["license"][0]["args"], serde_json::json!(["MIT"]));

    // depends_on("rust@<rust-version>:", type="build")
    let manifest: toml::Table = std::fs::read_to_string(repo().join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let rust_version = manifest["package"]["rust-version"].as_str().unwrap();
    let rust = recipe["depends_on"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["args"][0].as_str().unwrap().starts_with("rust"))
        .expect("the recipe depends on rust");
    assert_eq!(rust["args"][0], format!("rust@{rust_version}:"));
    assert_eq!(rust["kwargs"]["type"], "build");

    // Builds with `make lib`, installs with `make install-files`; a
    // tarball with vendor/ builds offline.
    assert_eq!(recipe["build_targets"], serde_json::json!(["lib"]));
    assert_eq!(
        recipe["make"],
        serde_json::json!([["install-files", "PREFIX=/opt/academy"]])
    );
    assert_eq!(
        recipe["environments"]["tarball"]["CARGO_NET_OFFLINE"],
        "true"
    );
    assert!(recipe["environments"]["git"]
        .get("CARGO_NET_OFFLINE")
        .is_none());
    let makefile = std::fs::read_to_string(repo().join("Makefile")).unwrap();
    assert!(makefile.contains("\ninstall-files:") && makefile.contains("\nlib:"));
}
