// SPDX-License-Identifier: GPL-2.0-only

//! Command-line syntax. Each subcommand has its own arguments struct so that
//! new commands (add, insert, delete, list, flush, policy, chain, save,
//! restore, conntrack, monitor) slot in as further variants.

use clap::{Args, Parser, Subcommand};

/// Control the rnf kernel firewall.
#[derive(Debug, Parser)]
#[command(name = "rnfctl", version = rnf_core::VERSION, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// rnfctl's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the module's version and per-hook packet counters.
    Status(StatusArgs),
}

/// Arguments of `rnfctl status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON (every stage of every hook).
    #[arg(long)]
    pub json: bool,
    /// One row per stage, with its priority.
    #[arg(short, long)]
    pub verbose: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("rnfctl").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn status_flags() {
        let Command::Status(a) = parse(&["status", "--json"]).unwrap().command;
        assert!(a.json);
        assert!(!a.verbose);
        let Command::Status(a) = parse(&["status", "-v"]).unwrap().command;
        assert!(!a.json);
        assert!(a.verbose);
        let Command::Status(a) = parse(&["status", "--verbose", "--json"]).unwrap().command;
        assert!(a.json && a.verbose);
        let Command::Status(a) = parse(&["status"]).unwrap().command;
        assert!(!a.json && !a.verbose);
    }

    #[test]
    fn errors() {
        assert!(parse(&[]).is_err(), "a subcommand is required");
        assert_eq!(
            parse(&["frobnicate"]).unwrap_err().kind(),
            clap::error::ErrorKind::InvalidSubcommand
        );
        assert_eq!(
            parse(&["status", "--bogus"]).unwrap_err().kind(),
            clap::error::ErrorKind::UnknownArgument
        );
        assert_eq!(
            parse(&["--version"]).unwrap_err().kind(),
            clap::error::ErrorKind::DisplayVersion
        );
    }
}
