//! Gives the shared library a versioned SONAME, as C libraries have, so
//! programs linked today keep loading a library with the same ABI; and
//! leaves in the profile directory (`target/release`) what a C program
//! needs right after a plain `cargo build --release`, with no `make` step:
//!
//! - `libacademy.so.0.1 -> libacademy.so`, the file the SONAME names, so
//!   that a program linked with `-Ltarget/release -lacademy` starts;
//! - `academy-uninstalled.pc`, so that `PKG_CONFIG_PATH=target/release
//!   pkg-config academy` (and Go's `#cgo pkg-config: academy`) finds this
//!   build tree.
//!
//! Both are conveniences: when the profile directory cannot be found or
//! written (an unusual layout, a read-only tree), the build goes on with a
//! warning.

use std::env;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let major: u64 = var("CARGO_PKG_VERSION_MAJOR").parse().unwrap_or(0);
    let minor = var("CARGO_PKG_VERSION_MINOR");
    // cargo-c's policy: while the major version is 0 every minor version
    // may break the ABI (libacademy.so.0.1); from 1.0 on, only a major one
    // (libacademy.so.1).
    let soname = if major == 0 {
        format!("libacademy.so.0.{minor}")
    } else {
        format!("libacademy.so.{major}")
    };
    // ELF platforms only (Apple's linker has no -soname).
    if var("CARGO_CFG_TARGET_FAMILY") != "unix" || var("CARGO_CFG_TARGET_VENDOR") == "apple" {
        return;
    }
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");

    let Some(profile_dir) = profile_dir() else {
        println!("cargo:warning=not creating {soname}: OUT_DIR is not <profile>/build/<pkg>/out");
        return;
    };
    if let Err(e) = symlink(&profile_dir, &soname, "libacademy.so") {
        println!(
            "cargo:warning=could not create {}/{soname}: {e}",
            profile_dir.display()
        );
    }
    if let Err(e) = write_uninstalled_pc(&profile_dir) {
        println!(
            "cargo:warning=could not write {}/academy-uninstalled.pc: {e}",
            profile_dir.display()
        );
    }
}

fn var(name: &str) -> String {
    env::var(name).unwrap_or_default()
}

/// The directory cargo puts the library in: OUT_DIR is
/// `<target dir>[/<triple>]/<profile>/build/academy-<hash>/out`, wherever
/// CARGO_TARGET_DIR points.
fn profile_dir() -> Option<PathBuf> {
    let out = PathBuf::from(env::var_os("OUT_DIR")?);
    let build = out.parent()?.parent()?;
    if out.file_name()? != "out" || build.file_name()? != "build" {
        return None;
    }
    Some(build.parent()?.to_path_buf())
}

/// `dir/name -> target`, replacing whatever `name` was (atomically, so a
/// program starting meanwhile sees the old or the new link).
fn symlink(dir: &Path, name: &str, target: &str) -> io::Result<()> {
    let link = dir.join(name);
    if fs::read_link(&link).is_ok_and(|t| t == Path::new(target)) {
        return Ok(());
    }
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    fs::rename(&tmp, &link)
}

/// A pkg-config file for this build tree. pkg-config prefers
/// `NAME-uninstalled.pc` to `NAME.pc` in every directory of
/// PKG_CONFIG_PATH, so `pkg-config academy` picks it up from there.
fn write_uninstalled_pc(dir: &Path) -> io::Result<()> {
    let manifest = var("CARGO_MANIFEST_DIR");
    let pc = format!(
        "# Written by build.rs: libacademy in its build tree. Use it with\n\
         # PKG_CONFIG_PATH={dir}\n\
         srcdir={manifest}\n\
         libdir={dir}\n\
         \n\
         Name: academy\n\
         Description: libacademy, the Academy agent framework for C (build tree)\n\
         Version: {version}\n\
         Libs: -L${{libdir}} -lacademy -Wl,-rpath,${{libdir}}\n\
         Libs.private: -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc\n\
         Cflags: -I${{srcdir}}/include\n",
        dir = dir.display(),
        version = var("CARGO_PKG_VERSION"),
    );
    let path = dir.join("academy-uninstalled.pc");
    if fs::read_to_string(&path).is_ok_and(|old| old == pc) {
        return Ok(());
    }
    fs::write(path, pc)
}
