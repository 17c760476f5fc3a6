//! `cargo xtask`: dispatches to one module per task.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// torchenv: reproducible PyTorch-CUDA environments from environments.yaml.
#[derive(Parser)]
#[command(bin_name = "cargo xtask", version, about)]
struct Cli {
    /// The environment spec.
    #[arg(long, global = true, default_value = xtask::spec::SPEC_FILE, env = "TORCHENV_SPEC")]
    spec: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the environments of the spec.
    List,
    /// Print one environment with every default resolved.
    Show {
        /// Environment name (default: the spec's `default:`).
        env: Option<String>,
        /// Print JSON instead of YAML.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::List => xtask::tasks::list(&cli.spec),
        Command::Show { env, json } => xtask::tasks::show(&cli.spec, env.as_deref(), json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.exit_code();
            eprintln!("{:?}", miette::Report::new(e));
            ExitCode::from(code)
        }
    }
}
