// SPDX-License-Identifier: GPL-2.0-only

//! `rnfctl`: command-line tool for the rnf kernel firewall.

mod cli;
mod commands;
mod conntrack;
mod error;
mod listing;
mod monitor;
mod nl;
mod output;
mod request;
mod rule_parse;
mod rule_print;
#[cfg(test)]
mod rule_tests;
mod rulefile;
mod status;
#[cfg(test)]
mod test_util;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = commands::run(&cli.command);
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
