//! `cargo xtask`: parses the command line and runs the command
//! (`xtask::commands`); errors are printed with miette and mapped to the
//! exit codes of README "Exit codes".

use std::process::ExitCode;

use clap::Parser;
use xtask::commands::Cli;
use xtask::error::Error;

fn main() -> ExitCode {
    match Cli::parse().run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Exited(code)) => ExitCode::from(code),
        Err(e) => {
            let code = e.exit_code();
            eprintln!("{:?}", miette::Report::new(e));
            ExitCode::from(code)
        }
    }
}
