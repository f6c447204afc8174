//! `gen-header CRATE_DIR CONFIG [OUT]`: the C header cbindgen makes of the
//! crate in CRATE_DIR with the config file CONFIG, written to OUT or to
//! standard output. tests/header.rs runs it.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (crate_dir, config) = match (args.first(), args.get(1)) {
        (Some(c), Some(f)) => (PathBuf::from(c), PathBuf::from(f)),
        _ => {
            eprintln!("usage: gen-header CRATE_DIR CONFIG [OUT]");
            return ExitCode::from(2);
        }
    };
    let config = match cbindgen::Config::from_file(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gen-header: {}: {e}", config.display());
            return ExitCode::FAILURE;
        }
    };
    let bindings = match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!("gen-header: {}: {e}", crate_dir.display());
            return ExitCode::FAILURE;
        }
    };
    match args.get(2) {
        Some(out) => {
            bindings.write_to_file(out);
        }
        None => bindings.write(std::io::stdout()),
    }
    ExitCode::SUCCESS
}
