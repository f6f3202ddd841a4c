// SPDX-License-Identifier: GPL-2.0-only

//! `rnfctl`: command-line tool for the rnf kernel firewall.

mod cli;
mod error;
mod nl;
mod output;
// The rule syntax is in place before the kernel side of the rule commands
// (issue 3); until `add`/`list`/... are wired to netlink, only the tests use
// it, and no subcommand pretends to work.
#[cfg_attr(not(test), allow(dead_code))]
mod rule_parse;
#[cfg_attr(not(test), allow(dead_code))]
mod rule_print;
#[cfg(test)]
mod rule_tests;
mod status;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Status(args) => status::run(args),
    };
    match result {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(out.as_bytes())
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return ExitCode::from(error::EXIT_FAILURE);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rnfctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
