//! Gives the shared library a versioned SONAME (libacademy.so.MAJOR), as C
//! libraries have, so programs linked today keep loading the right ABI.

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libacademy.so.{major}");
    println!("cargo:rerun-if-changed=build.rs");
}
