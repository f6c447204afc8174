//! Installing and linking like a C library: `make install-files` into a
//! prefix (after the build that scripts/test.sh does), pkg-config, the
//! versioned SONAME, static linking, and the header compiled as C++.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::repo;

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

fn install(prefix: &Path) {
    run(Command::new("make")
        .arg("-s")
        .arg("install-files")
        .arg(format!("PREFIX={}", prefix.display()))
        .current_dir(repo()));
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("academy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn installs_with_pkg_config_and_a_versioned_soname() {
    let prefix = temp("prefix");
    install(&prefix);
    let version = env!("CARGO_PKG_VERSION");
    for f in [
        "lib/libacademy.a",
        "lib/libacademy.so",
        "lib/libacademy.so.0",
        "include/academy.h",
        "include/academy.hpp",
        "lib/pkgconfig/academy.pc",
    ] {
        assert!(prefix.join(f).exists(), "{f} is installed");
    }
    assert!(prefix.join(format!("lib/libacademy.so.{version}")).exists());
    let soname = run(Command::new("readelf")
        .arg("-d")
        .arg(prefix.join("lib/libacademy.so")));
    assert!(
        soname.contains("Library soname: [libacademy.so.0]"),
        "{soname}"
    );

    let pc = prefix.join("lib/pkgconfig");
    let flags = run(Command::new("pkg-config")
        .args(["--cflags", "--libs", "academy"])
        .env("PKG_CONFIG_PATH", &pc));
    assert!(
        flags.contains(&format!("-I{}", prefix.join("include").display())),
        "{flags}"
    );
    let modversion = run(Command::new("pkg-config")
        .args(["--modversion", "academy"])
        .env("PKG_CONFIG_PATH", &pc));
    assert_eq!(modversion.trim(), version);

    // Build an example the way a C user would, against the installed copy.
    let exe = prefix.join("version_check");
    let mut cc = Command::new("cc");
    cc.arg(repo().join("examples-c/version_check.c"))
        .arg("-o")
        .arg(&exe)
        .args(["-Wall", "-Wextra", "-Werror"]);
    cc.args(flags.split_whitespace());
    run(&mut cc);
    let out = run(Command::new(&exe).env("LD_LIBRARY_PATH", prefix.join("lib")));
    assert_eq!(out, format!("header {version}, library {version}\n"));
}

#[test]
fn the_main_job_links_statically() {
    // The documented static link line (README): no libacademy.so needed.
    let dir = temp("static");
    let exe = dir.join("demo-static");
    run(Command::new("cc")
        .args([
            "-O2",
            "-std=c11",
            "-D_DEFAULT_SOURCE",
            "-Wall",
            "-Wextra",
            "-Werror",
        ])
        .arg("-I")
        .arg(repo().join("include"))
        .arg(repo().join("examples-c/demo.c"))
        .arg(repo().join("target/release/libacademy.a"))
        .args([
            "-lgcc_s",
            "-lutil",
            "-lrt",
            "-lpthread",
            "-lm",
            "-ldl",
            "-lc",
        ])
        .arg("-o")
        .arg(&exe));
    let deps = run(Command::new("ldd").arg(&exe));
    assert!(!deps.contains("libacademy"), "{deps}");
    let out = run(Command::new(&exe).env_remove("ACADEMY_EXCHANGE_URL"));
    assert!(out.contains("add(2, 3) = 5"), "{out}");
}

#[test]
fn the_header_compiles_as_cpp() {
    let dir = temp("cpp");
    let src = dir.join("check.cpp");
    std::fs::write(
        &src,
        "#include \"academy.h\"\nint main() { return academy_version() == nullptr; }\n",
    )
    .unwrap();
    run(Command::new("g++")
        .args([
            "-std=c++17",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-fsyntax-only",
            "-I",
        ])
        .arg(repo().join("include"))
        .arg(&src));
    // And as strict C.
    run(Command::new("cc")
        .args([
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-fsyntax-only",
            "-x",
            "c",
            "-I",
        ])
        .arg(repo().join("include"))
        .arg("-")
        .stdin(std::fs::File::open(repo().join("examples-c/version_check.c")).unwrap()));
}

#[test]
fn python_ctypes_loads_the_library_and_serves_and_calls() {
    let lib = repo().join("target/release/libacademy.so");
    let out = run(Command::new(common::python())
        .arg(repo().join("tests/py/ctypes_agent.py"))
        .arg(&lib));
    assert_eq!(
        out,
        format!(
            "add 42\nsub remote error no action sub\nserved [0]\nversion {}\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

fn go_tool() -> PathBuf {
    let in_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("go"))
                .find(|g| g.exists())
        })
        .unwrap_or_default();
    let go = in_path.unwrap_or_else(|| PathBuf::from("/usr/local/go/bin/go"));
    assert!(go.exists(), "the Go toolchain is needed for the Go binding's tests (go not in PATH nor /usr/local/go/bin)");
    go
}

/// go vet, then go test: among the tests, 10,000 ActionAsync calls in
/// flight at once from as many goroutines, with the process kept to at
/// most 64 OS threads.
#[test]
fn the_go_package_passes_its_tests() {
    run(Command::new(go_tool())
        .args(["vet", "./..."])
        .current_dir(repo().join("go")));
    let out = run(Command::new(go_tool())
        .args(["test", "-count=1", "./..."])
        .current_dir(repo().join("go")));
    assert!(
        out.contains("ok  \tgithub.com/academy-agents/libacademy/go"),
        "{out}"
    );
}

#[test]
fn the_cpp_example_builds_with_cmake_against_the_installed_package() {
    let prefix = temp("cmake-prefix");
    install(&prefix);
    let build = temp("cmake-build");
    run(Command::new("cmake")
        .arg("-S")
        .arg(repo().join("examples-cpp"))
        .arg("-B")
        .arg(&build)
        .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display())));
    run(Command::new("cmake").arg("--build").arg(&build));
    let out =
        run(Command::new(build.join("call_agent")).env("LD_LIBRARY_PATH", prefix.join("lib")));
    assert_eq!(
        out,
        "add(2, 3) = 5.0\ndivide failed: remote\n100 actions through a queue: 100 correct\n"
    );
}
