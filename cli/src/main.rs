//! `hooksmith`: send correctly signed webhooks, listen for them locally, and operate a running
//! app's deliveries, dead letters and connections through its admin API.
//!
//! Run `hooksmith --help`, or `hooksmith <command> --help`.

mod admin;
mod client;
mod listen;
mod output;
mod send;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Send, receive and operate webhooks with hooksmith.
#[derive(Debug, Parser)]
#[command(name = "hooksmith", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sign a payload as a provider would and POST it.
    Send(send::Args),
    /// Run a local receiver that prints every delivery and its signature verdict.
    Listen(listen::Args),
    /// List, show and replay stored deliveries (admin API).
    #[command(subcommand)]
    Deliveries(admin::Deliveries),
    /// List and requeue dead handler jobs (admin API).
    #[command(subcommand)]
    Dead(admin::Dead),
    /// Manage per-tenant connections (admin API).
    #[command(subcommand)]
    Connections(admin::Connections),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Send(args) => send::run(args).await,
        Command::Listen(args) => listen::run(args).await,
        Command::Deliveries(command) => admin::deliveries(command).await,
        Command::Dead(command) => admin::dead(command).await,
        Command::Connections(command) => admin::connections(command).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("{} {error:#}", output::Style::stderr().red("error:"));
            ExitCode::from(2)
        }
    }
}
