//! `academy-exchange --config FILE.toml`: an Academy exchange server that
//! reads the same TOML file as `python -m academy.exchange.cloud --config`.
//! Prints `Exchange listening on URL` once listening; stops cleanly (exit 0)
//! on SIGINT or SIGTERM. Logs as the file's `[logger]` says (stdout, and a
//! log file), or as `ACADEMY_LOG` says. Raises its open-file limit to the
//! hard limit, as Go programs do, since every client holds a connection.

use std::io::Write;
use std::process::ExitCode;

use academy::server::{logger, ExchangeServer, ServerConfig};

const USAGE: &str = "usage: academy-exchange --config FILE.toml";

fn parse_args() -> Result<String, String> {
    let mut args = std::env::args().skip(1);
    let mut config = None;
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            println!("{USAGE}\n\nRuns an Academy exchange server (academy-py 1.0 wire protocol).");
            std::process::exit(0);
        } else if arg == "--config" {
            config = Some(
                args.next()
                    .ok_or_else(|| "argument --config: expected one argument".to_owned())?,
            );
        } else if let Some(v) = arg.strip_prefix("--config=") {
            config = Some(v.to_owned());
        } else {
            return Err(format!("unrecognized arguments: {arg}"));
        }
    }
    config.ok_or_else(|| "the following arguments are required: --config".to_owned())
}

async fn run(config: ServerConfig) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let logger = config.logger.clone();
    let server = ExchangeServer::start(config)
        .await
        .map_err(|e| e.to_string())?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "Exchange listening on {}", server.url());
        let _ = out.flush();
    }
    // After the line above, which tools wait for as the first one.
    tracing::info!(
        "Configured logger (stdout-level={}, logfile={}, logfile-level={})",
        logger.level,
        logger
            .logfile
            .as_ref()
            .map_or("None".to_owned(), |p| p.display().to_string()),
        logger.logfile_level
    );
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("stopping");
    server.stop().await.map_err(|e| e.to_string())?;
    let _ = writeln!(std::io::stdout(), "Exchange closed");
    Ok(())
}

/// Raises the soft open-file limit to the hard one (the default soft limit,
/// often 1024, would cap the clients at about that many).
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn main() -> ExitCode {
    let path = match parse_args() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{USAGE}\nacademy-exchange: error: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match ServerConfig::from_toml_file(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("academy-exchange: {}", e.message);
            return ExitCode::from(1);
        }
    };
    if let Err(e) = logger::install(&config.logger) {
        eprintln!("academy-exchange: {}", e.message);
        return ExitCode::from(1);
    }
    raise_open_file_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("academy-exchange: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("academy-exchange: {e}");
            ExitCode::from(1)
        }
    }
}
