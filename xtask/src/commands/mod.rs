//! The command line: one module per `cargo xtask` command, each a clap
//! `Args` struct (its doc comments are the help text) implementing [`Run`].
//! `main.rs` only parses [`Cli`] and calls [`Cli::run`].
//!
//! This is the top layer: it may use every capability module and
//! `crate::error`; nothing else uses it.
//!
//! May use: every capability module and `error` (this is the command layer).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::Result;

mod bench;
mod build;
mod bundle;
mod check;
mod ci;
mod ctx;
mod doctor;
mod down;
mod eval;
mod exec;
mod export;
mod gate;
mod list;
mod lock;
mod logs;
mod prune;
mod registry;
mod shell;
mod show;
mod slurm;
mod status;
mod test;
mod up;

pub use ctx::Ctx;

/// A command: parsed flags that know how to run themselves.
pub trait Run {
    fn run(self, ctx: &Ctx) -> Result<()>;
}

/// torchenv: reproducible PyTorch-CUDA environments from environments.yaml.
#[derive(Parser)]
#[command(bin_name = "cargo xtask", version, about)]
pub struct Cli {
    /// The environment spec.
    #[arg(long, global = true, default_value = crate::spec::SPEC_FILE, env = "TORCHENV_SPEC")]
    spec: PathBuf,
    /// The lock (default: environments.lock beside the spec).
    #[arg(long, global = true, env = "TORCHENV_LOCK")]
    lock: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// Runs the parsed command in a fresh [`Ctx`].
    pub fn run(self) -> Result<()> {
        let ctx = Ctx::new(self.spec, self.lock);
        self.command.run(&ctx)
    }
}

#[derive(Subcommand)]
enum Command {
    List(list::List),
    Show(show::Show),
    Lock(lock::Lock),
    Build(build::Build),
    Bundle(bundle::Bundle),
    Load(bundle::Load),
    Push(registry::Push),
    Pull(registry::Pull),
    Up(crate::launch::up::Up),
    Down(crate::launch::down::Down),
    Status(status::Status),
    Shell(shell::Shell),
    Exec(exec::Exec),
    Logs(logs::Logs),
    Doctor(doctor::Doctor),
    Eval(eval::Eval),
    Export(export::Export),
    Check(check::Check),
    Ci(ci::Ci),
    Bench(bench::Bench),
    Prune(prune::Prune),
    Slurm(slurm::Slurm),
    Test(test::Test),
}

impl Run for Command {
    fn run(self, ctx: &Ctx) -> Result<()> {
        match self {
            Command::List(c) => c.run(ctx),
            Command::Show(c) => c.run(ctx),
            Command::Lock(c) => c.run(ctx),
            Command::Build(c) => c.run(ctx),
            Command::Bundle(c) => c.run(ctx),
            Command::Load(c) => c.run(ctx),
            Command::Push(c) => c.run(ctx),
            Command::Pull(c) => c.run(ctx),
            Command::Up(c) => c.run(ctx),
            Command::Down(c) => c.run(ctx),
            Command::Status(c) => c.run(ctx),
            Command::Shell(c) => c.run(ctx),
            Command::Exec(c) => c.run(ctx),
            Command::Logs(c) => c.run(ctx),
            Command::Doctor(c) => c.run(ctx),
            Command::Eval(c) => c.run(ctx),
            Command::Export(c) => c.run(ctx),
            Command::Check(c) => c.run(ctx),
            Command::Ci(c) => c.run(ctx),
            Command::Bench(c) => c.run(ctx),
            Command::Prune(c) => c.run(ctx),
            Command::Slurm(c) => c.run(ctx),
            Command::Test(c) => c.run(ctx),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
