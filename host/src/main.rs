//! `zonegate`: parse the command line, start logging, hand over to the command.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use zonegate::cli::{Cli, LogFormat};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_new(&cli.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format() {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    zonegate::cli::main(cli)
}
