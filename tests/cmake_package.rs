//! The CMake package that `make install` writes
//! (<libdir>/cmake/academy/academyConfig.cmake and its version file):
//! find_package(academy) in a project, the static target, which versions
//! it answers, and an installed tree moved elsewhere. The C++ example
//! (examples-cpp, academy::academy) is built in tests/packaging.rs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::repo;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("academy-cmake-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn output(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
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
        .args(["-s", "install-files"])
        .arg(format!("PREFIX={}", prefix.display()))
        .current_dir(repo()));
}

#[test]
fn a_c_project_links_the_static_target_from_a_moved_install() {
    let root = temp("static");
    install(&root.join("installed"));
    // The package finds its files relative to itself.
    std::fs::rename(root.join("installed"), root.join("moved")).unwrap();
    let project = root.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("CMakeLists.txt"),
        format!(
            "cmake_minimum_required(VERSION 3.16)\n\
             project(static_demo C)\n\
             find_package(academy 0.1 REQUIRED)\n\
             add_executable(demo {demo})\n\
             target_compile_options(demo PRIVATE -Wall -Wextra -Werror -D_DEFAULT_SOURCE)\n\
             target_link_libraries(demo PRIVATE academy::academy_static)\n",
            demo = repo().join("examples-c/demo.c").display()
        ),
    )
    .unwrap();
    let build = root.join("build");
    run(Command::new("cmake")
        .arg("-S")
        .arg(&project)
        .arg("-B")
        .arg(&build)
        .arg(format!(
            "-DCMAKE_PREFIX_PATH={}",
            root.join("moved").display()
        )));
    run(Command::new("cmake").arg("--build").arg(&build));
    let deps = run(Command::new("ldd").arg(build.join("demo")));
    assert!(!deps.contains("libacademy"), "linked statically: {deps}");
    let out = run(Command::new(build.join("demo")).env_remove("ACADEMY_EXCHANGE_URL"));
    assert!(out.contains("add(2, 3) = 5"), "{out}");
}

/// Configures a project that asks for `find_package(academy <request>)`;
/// returns whether it was found and its version.
fn find(prefix: &Path, work: &Path, request: &str) -> (bool, String) {
    let project = work.join(format!("find-{}", request.replace([' ', '.'], "_")));
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("CMakeLists.txt"),
        format!(
            "cmake_minimum_required(VERSION 3.16)\n\
             project(find_academy NONE)\n\
             find_package(academy {request} QUIET)\n\
             message(STATUS \"found=${{academy_FOUND}} version=${{academy_VERSION}}\")\n"
        ),
    )
    .unwrap();
    let out = run(Command::new("cmake")
        .arg("-S")
        .arg(&project)
        .arg("-B")
        .arg(project.join("build"))
        .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display())));
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("-- found="))
        .unwrap_or_else(|| panic!("{out}"));
    let (found, version) = line.split_once(" version=").unwrap();
    (found == "1", version.to_owned())
}

#[test]
fn the_version_file_follows_the_soname() {
    let root = temp("versions");
    let prefix = root.join("prefix");
    install(&prefix);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        version, "0.1.0",
        "update the requests below with the version"
    );
    for (request, found) in [
        ("", true),
        ("0.1", true),
        ("0.1.0 EXACT", true),
        ("0.0", false), // 0.x minor versions break the ABI: 0.1 is not 0.0
        ("0.2", false),
        ("1.0", false),
        ("0.1.1", false), // newer than installed
    ] {
        let (got, got_version) = find(&prefix, &root, request);
        assert_eq!(got, found, "find_package(academy {request})");
        if found {
            assert_eq!(got_version, version);
        }
    }
}

#[test]
fn the_package_declares_both_targets() {
    let root = temp("targets");
    let prefix = root.join("prefix");
    install(&prefix);
    let project = root.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("CMakeLists.txt"),
        "cmake_minimum_required(VERSION 3.16)\n\
         project(targets NONE)\n\
         find_package(academy REQUIRED)\n\
         foreach(t academy::academy academy::academy_static)\n\
           get_target_property(type ${t} TYPE)\n\
           get_target_property(location ${t} IMPORTED_LOCATION)\n\
           get_target_property(includes ${t} INTERFACE_INCLUDE_DIRECTORIES)\n\
           message(STATUS \"${t} ${type} ${location} ${includes}\")\n\
         endforeach()\n",
    )
    .unwrap();
    let out = run(Command::new("cmake")
        .arg("-S")
        .arg(&project)
        .arg("-B")
        .arg(root.join("build"))
        .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display())));
    let (lib, include) = (prefix.join("lib"), prefix.join("include"));
    for expected in [
        format!(
            "-- academy::academy SHARED_LIBRARY {}/libacademy.so.{} {}",
            lib.display(),
            env!("CARGO_PKG_VERSION"),
            include.display()
        ),
        format!(
            "-- academy::academy_static STATIC_LIBRARY {}/libacademy.a {}",
            lib.display(),
            include.display()
        ),
    ] {
        assert!(
            out.lines().any(|l| l == expected),
            "missing {expected:?}:\n{out}"
        );
    }
}
