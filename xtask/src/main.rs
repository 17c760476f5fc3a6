//! `cargo xtask`: parses the command line and runs the command
//! (`xtask::commands`); errors are printed with miette (wrapped to the
//! terminal, unwrapped into a log or pipe) and mapped to the exit codes of
//! README "Exit codes".

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use xtask::commands::Cli;
use xtask::error::Error;

fn main() -> ExitCode {
    if !std::io::stderr().is_terminal() {
        // A log or a pipe reads errors unwrapped: miette's 80 columns
        // would split a path or a value (`/opt/venv` as `/ opt/venv`) for
        // whoever searches the log for it.
        let _ = miette::set_hook(Box::new(|_| {
            Box::new(miette::MietteHandlerOpts::new().wrap_lines(false).build())
        }));
    }
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
