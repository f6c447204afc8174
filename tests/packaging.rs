//! Installing and linking like a C library: `make install-files` into a
//! prefix (after the build that scripts/test.sh does), pkg-config, the
//! versioned SONAME (cargo-c's policy), the stripped library with its
//! debug info apart, static linking, the header compiled as C++, and the
//! Go package (through pkg-config, its examples and `go vet`).

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
    let soname = expected_soname();
    for f in [
        "lib/libacademy.a",
        "lib/libacademy.so",
        "include/academy.h",
        "include/academy.hpp",
        "lib/pkgconfig/academy.pc",
        "lib/cmake/academy/academyConfig.cmake",
        "lib/cmake/academy/academyConfigVersion.cmake",
        "bin/academy-exchange",
    ] {
        assert!(prefix.join(f).exists(), "{f} is installed");
    }
    // libacademy.so -> libacademy.so.0.1 -> libacademy.so.0.1.0
    let lib = prefix.join("lib");
    assert_eq!(
        std::fs::read_link(lib.join("libacademy.so")).unwrap(),
        Path::new(&soname)
    );
    assert_eq!(
        std::fs::read_link(lib.join(&soname)).unwrap(),
        PathBuf::from(format!("libacademy.so.{version}"))
    );
    let dynamic = run(Command::new("readelf")
        .arg("-d")
        .arg(lib.join("libacademy.so")));
    assert!(
        dynamic.contains(&format!("Library soname: [{soname}]")),
        "{dynamic}"
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

/// cargo-c's SONAME policy: libacademy.so.0.MINOR while the major version
/// is 0 (every 0.x release may break the ABI), libacademy.so.MAJOR after.
fn expected_soname() -> String {
    let (major, minor) = (
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
    );
    if major == "0" {
        format!("libacademy.so.0.{minor}")
    } else {
        format!("libacademy.so.{major}")
    }
}

#[test]
fn the_soname_follows_cargo_c_and_its_file_is_in_target_release() {
    let soname = expected_soname();
    assert_eq!(
        soname,
        "libacademy.so.0.1",
        "version {}",
        env!("CARGO_PKG_VERSION")
    );
    let release = repo().join("target/release");
    let dynamic = run(Command::new("readelf")
        .arg("-d")
        .arg(release.join("libacademy.so")));
    assert!(
        dynamic.contains(&format!("Library soname: [{soname}]")),
        "{dynamic}"
    );
    // build.rs links the SONAME's file to the library, so programs linked
    // against target/release start without a `make` step.
    assert_eq!(
        std::fs::read_link(release.join(&soname)).unwrap(),
        Path::new("libacademy.so")
    );
    let dir = temp("soname");
    let exe = dir.join("version_check");
    run(Command::new("cc")
        .arg(repo().join("examples-c/version_check.c"))
        .arg("-I")
        .arg(repo().join("include"))
        .arg("-L")
        .arg(&release)
        .args(["-lacademy", "-o"])
        .arg(&exe));
    let needed = run(Command::new("readelf").arg("-d").arg(&exe));
    assert!(
        needed.contains(&format!("Shared library: [{soname}]")),
        "{needed}"
    );
    let version = env!("CARGO_PKG_VERSION");
    let out = run(Command::new(&exe).env("LD_LIBRARY_PATH", &release));
    assert_eq!(out, format!("header {version}, library {version}\n"));
}

#[test]
fn the_installed_library_is_stripped_and_its_debug_info_is_found() {
    let prefix = temp("stripped");
    install(&prefix);
    let version = env!("CARGO_PKG_VERSION");
    for (file, debug) in [
        (
            format!("lib/libacademy.so.{version}"),
            format!("lib/.debug/libacademy.so.{version}.debug"),
        ),
        (
            "bin/academy-exchange".to_owned(),
            "bin/.debug/academy-exchange.debug".to_owned(),
        ),
    ] {
        let file = prefix.join(file);
        let debug = prefix.join(debug);
        let sections = run(Command::new("readelf").arg("-S").arg(&file));
        assert!(
            !sections.contains(".debug_line") && !sections.contains(".symtab"),
            "{} is not stripped:\n{sections}",
            file.display()
        );
        assert!(sections.contains(".gnu_debuglink"), "{sections}");
        let debug_sections = run(Command::new("readelf").arg("-S").arg(&debug));
        assert!(debug_sections.contains(".debug_line"), "{debug_sections}");
        // readelf follows .gnu_debuglink (checking its CRC) as gdb does.
        let lines = run(Command::new("readelf")
            .args(["-wK", "--debug-dump=aranges"])
            .arg(&file));
        assert!(
            lines.contains(&format!("loaded from {}", debug.display())),
            "{}",
            &lines[..lines.len().min(2000)]
        );
    }
    // The stripped library still works.
    let exe = prefix.join("version_check");
    run(Command::new("cc")
        .arg(repo().join("examples-c/version_check.c"))
        .arg("-I")
        .arg(prefix.join("include"))
        .arg("-L")
        .arg(prefix.join("lib"))
        .args(["-lacademy", "-o"])
        .arg(&exe));
    let out = run(Command::new(&exe).env("LD_LIBRARY_PATH", prefix.join("lib")));
    assert_eq!(out, format!("header {version}, library {version}\n"));
}

#[test]
fn make_install_honours_libdir_and_destdir() {
    let root = temp("destdir");
    run(Command::new("make")
        .args([
            "-s",
            "install-files",
            "PREFIX=/opt/academy",
            "LIBDIR=/opt/academy/lib64",
        ])
        .arg(format!("DESTDIR={}", root.display()))
        .current_dir(repo()));
    let lib64 = root.join("opt/academy/lib64");
    assert!(lib64.join("libacademy.so").exists());
    assert!(lib64.join("cmake/academy/academyConfig.cmake").exists());
    assert!(!root.join("opt/academy/lib").exists());
    // The files name the final paths, not the staging directory.
    let pc = std::fs::read_to_string(lib64.join("pkgconfig/academy.pc")).unwrap();
    assert!(pc.contains("libdir=/opt/academy/lib64\n"), "{pc}");
    assert!(pc.contains("includedir=/opt/academy/include\n"), "{pc}");
    assert!(!pc.contains(&root.display().to_string()), "{pc}");
    let config = std::fs::read_to_string(lib64.join("cmake/academy/academyConfig.cmake")).unwrap();
    assert!(
        config.contains("\"${CMAKE_CURRENT_LIST_DIR}/../../../include\""),
        "{config}"
    );
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

/// `go` in go/, finding libacademy through `#cgo pkg-config: academy`:
/// PKG_CONFIG_PATH points at target/release, where build.rs writes
/// academy-uninstalled.pc (the in-tree fallback the README documents).
fn go_in_tree(args: &[&str]) -> String {
    run(Command::new(go_tool())
        .args(args)
        .env("PKG_CONFIG_PATH", repo().join("target/release"))
        .current_dir(repo().join("go")))
}

/// Among the tests: 10,000 ActionAsync calls in flight at once from as
/// many goroutines, with the process kept to at most 64 OS threads.
#[test]
fn the_go_package_passes_its_tests_and_examples_and_vet() {
    let out = go_in_tree(&["test", "-count=1", "-v", "./..."]);
    assert!(
        out.contains("ok  \tgithub.com/academy-agents/libacademy/go"),
        "{out}"
    );
    // The Example functions of go/example_test.go ran, their // Output: checked.
    for example in [
        "Example",
        "ExampleClient_SendAsync",
        "ExampleNewFactory_badURL",
    ] {
        assert!(
            out.contains(&format!("--- PASS: {example} (")),
            "{example} did not pass:\n{out}"
        );
    }
    go_in_tree(&["vet", "./..."]);
}

#[test]
fn the_in_tree_pkg_config_file_describes_this_build() {
    let release = repo().join("target/release");
    let flags = run(Command::new("pkg-config")
        .args(["--cflags", "--libs", "academy"])
        .env("PKG_CONFIG_PATH", &release));
    assert!(
        flags.contains(&format!("-I{}", repo().join("include").display()))
            && flags.contains(&format!("-L{}", release.display()))
            && flags.contains(&format!("-Wl,-rpath,{}", release.display())),
        "{flags}"
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
    // The tour of the other wrappers, against an embedded exchange.
    let out =
        run(Command::new(build.join("client_tour")).env("LD_LIBRARY_PATH", prefix.join("lib")));
    assert_eq!(
        out,
        "version matches\n\
         status name ACADEMY_ERR_TIMEOUT\n\
         add 5\n\
         divide ACADEMY_ERR_REMOTE with the handler's text\n\
         request add 42\n\
         local response result null\n\
         status active 1\n\
         heartbeat age known 1\n\
         discover finds it 1, not as exact class 0\n\
         stats have completed\n\
         send_async 50 accepted, 50 received\n\
         shared with [\"team\"]\n\
         after unshare []\n\
         share with strangers ACADEMY_ERR_FORBIDDEN\n\
         queue twice 42, 1 request answered, ping 1\n\
         terminated 1\n\
         serving ended ACADEMY_ERR_MAILBOX_TERMINATED\n\
         handler served 3\n\
         log lines seen 1\n"
    );
}

/// academy.hpp's Python values (examples-cpp/values_tour.cpp) built as
/// C++17 and as C++20 (std::span views), run against this build: arrays
/// and bytes through their JSON forms, and a 2x3 array sent by a C++ user
/// to a C++ agent (as a pickle: the arguments hold a py/ form) whose row
/// sums come back as an array.
#[test]
fn the_cpp_wrappers_read_and_write_numpy_arrays_and_bytes() {
    let release = repo().join("target/release");
    let dir = temp("cpp-values");
    for std in ["c++17", "c++20"] {
        let exe = dir.join(format!("values_tour-{std}"));
        run(Command::new("g++")
            .arg(format!("-std={std}"))
            .args(["-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
            .arg(repo().join("include"))
            .arg(repo().join("examples-cpp/values_tour.cpp"))
            .arg("-L")
            .arg(&release)
            .args(["-lacademy", "-lpthread"])
            .arg(format!("-Wl,-rpath,{}", release.display()))
            .arg("-o")
            .arg(&exe));
        let out = run(&mut Command::new(&exe));
        assert_eq!(
            out,
            "C f8 C [0 1 2] [10 11 12]\n\
             F f8 F [0 1 2] [10 11 12]\n\
             as float: ACADEMY_ERR_INVALID_ARGUMENT\n\
             mask |b1 101\n\
             complex c16 1\n\
             int64 1\n\
             span 6 12 10\n\
             3 in 2x2: ACADEMY_ERR_INVALID_ARGUMENT\n\
             bytes 4 255\n\
             json_get \"c\"\n\
             row_sums 1 3 33\n\
             as json 33\n\
             float32 ACADEMY_ERR_REMOTE\n",
            "{std}"
        );
    }
}

/// The C functions of a header: the names of its prototypes (lines that
/// are not comments and declare `academy_…(`).
fn c_functions(header: &str) -> Vec<String> {
    let mut names: Vec<String> = header
        .lines()
        .filter(|l| !l.trim_start().starts_with('*') && !l.trim_start().starts_with("/*"))
        .filter_map(|l| {
            // `enum academy_status academy_x(` or `const char *academy_x(`.
            let before = &l[..l.find('(')?];
            let name = before.rsplit([' ', '*']).next()?;
            let identifier = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            (name.starts_with("academy_") && identifier).then(|| name.to_owned())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn every_c_function_has_a_cpp_wrapper() {
    let header = std::fs::read_to_string(repo().join("include/academy.h")).unwrap();
    let hpp = std::fs::read_to_string(repo().join("include/academy.hpp")).unwrap();
    // Code only: a name in a comment is no wrapper.
    let code: String = hpp
        .lines()
        .map(|l| l.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let functions = c_functions(&header);
    assert!(
        functions.len() > 50 && functions.contains(&"academy_set_log_callback".to_owned()),
        "{functions:?}"
    );
    // Called (`name(`) or passed as a free function (`name>`).
    let missing: Vec<&String> = functions
        .iter()
        .filter(|f| !code.contains(&format!("{f}(")) && !code.contains(&format!("{f}>")))
        .collect();
    assert!(
        missing.is_empty(),
        "C functions of include/academy.h without a wrapper in include/academy.hpp: {missing:?}"
    );
}
