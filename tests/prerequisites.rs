//! What `make test` installs is one list, `scripts/test-packages.txt`:
//! scripts/test.sh installs those Debian packages by asking dpkg for each
//! package by name, and the README names exactly them. A check for a
//! command would miss a package whose command another package brings
//! (openmpi-bin's mpicc without libopenmpi-dev's mpi.h).

mod common;

use common::repo;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The packages of scripts/test-packages.txt, in its order.
fn listed_packages() -> Vec<String> {
    read("scripts/test-packages.txt")
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(|line| line.split_whitespace().next().unwrap().to_owned())
        .collect()
}

#[test]
fn the_readme_names_exactly_the_packages_the_test_command_installs() {
    let packages = listed_packages();
    assert!(
        packages.len() >= 10,
        "too few packages listed: {packages:?}"
    );
    let readme = read("README.md");
    let start = readme
        .find("<!-- test-packages -->")
        .expect("README: the <!-- test-packages --> marker")
        + "<!-- test-packages -->".len();
    let end = readme[start..]
        .find("<!-- /test-packages -->")
        .expect("README: the <!-- /test-packages --> marker")
        + start;
    let named: Vec<String> = readme[start..end]
        .split(',')
        .map(|p| p.split_whitespace().collect::<String>())
        .collect();
    assert_eq!(
        named, packages,
        "the README's list of Debian packages differs from scripts/test-packages.txt"
    );
}

#[test]
fn the_test_command_asks_dpkg_for_packages_not_for_commands() {
    // test.sh with the helpers it sources (scripts/packages.sh).
    let test_sh = read("scripts/test.sh");
    assert!(
        test_sh.contains("source scripts/packages.sh"),
        "scripts/test.sh must source scripts/packages.sh"
    );
    let script = test_sh + &read("scripts/packages.sh");
    assert!(
        script.contains("scripts/test-packages.txt") && script.contains("dpkg-query -W"),
        "scripts/test.sh must read scripts/test-packages.txt and ask dpkg-query for each package"
    );
    for line in script.lines().filter(|l| !l.trim_start().starts_with('#')) {
        assert!(
            !line.contains("command -v"),
            "scripts/test.sh decides by a command's presence: {line}"
        );
    }
    // What the MPI test compiles against, checked as a file.
    assert!(
        script.contains("mpi\\.h"),
        "scripts/test.sh must check for mpi.h as a file"
    );
}

#[test]
fn every_listed_package_is_installed_when_the_suite_runs() {
    // The suite runs after scripts/test.sh installed the list; a package
    // still missing here means the install step skipped it.
    let missing: Vec<String> = listed_packages()
        .into_iter()
        .filter(|package| {
            let out = std::process::Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", package])
                .output()
                .expect("run dpkg-query");
            String::from_utf8_lossy(&out.stdout) != "install ok installed"
        })
        .collect();
    assert!(
        missing.is_empty(),
        "not installed: {missing:?} (run the tests with make test)"
    );
}
