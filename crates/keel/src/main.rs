//! The `keel` binary: `serve` runs a node, every other verb is an HTTP client.
//!
//! Exit codes: 0 success; 1 not found or a condition not met; 2 any other error, reported on
//! one line.

mod cli;
mod commands;
mod serve;
mod signal;

use std::process::ExitCode;

use clap::Parser;

/// A request allocates and frees many small buffers across two threads; mimalloc's per-thread
/// free lists cost less than glibc's malloc there (measured with bench/run.sh: see README).
/// Built without transparent huge pages (`no_thp`): memory mimalloc frees and reuses would
/// otherwise fault back in as 2 MiB pages that the kernel zeroes each time, about a tenth of
/// the CPU of a write load (perf; A/B with MIMALLOC_ALLOW_THP=0).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // `keel serve` has its own parser, so that its help lists only server settings.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let command = if args.get(1).is_some_and(|a| a == "serve") {
        let rest = args.into_iter().skip(2);
        let serve =
            serve::ServeCli::parse_with_defaults(std::iter::once("keel serve".into()).chain(rest));
        Verb::Serve(Box::new(serve.args))
    } else {
        Verb::Client(cli::Cli::parse_from(args))
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Verb::Serve(args) => serve::run(*args).await.map(|()| commands::Exit::Ok),
            Verb::Client(cli) => commands::run(&cli.addr, cli.json, cli.command).await,
        }
    });
    match result {
        Ok(commands::Exit::Ok) => ExitCode::SUCCESS,
        Ok(commands::Exit::NotMet) => ExitCode::from(1),
        Err(e) => {
            let not_met = e
                .downcast_ref::<keel_client::Error>()
                .and_then(|c| c.code())
                .is_some_and(commands::is_not_met);
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(if not_met { 1 } else { 2 })
        }
    }
}

/// What this run does.
enum Verb {
    /// Run a node.
    Serve(Box<serve::ServeArgs>),
    /// Call a server.
    Client(cli::Cli),
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\n', " ")
}
