// SPDX-License-Identifier: GPL-2.0-only

//! Core of rnf shared by the kernel module and the `rnfctl` tool.
//!
//! This crate is `no_std`, uses no `alloc` and has no dependencies. The
//! kernel module includes its modules (`hooks.rs`, `wire.rs`, `packet.rs`,
//! `rules.rs`, `compile.rs`, `classify.rs`, `eval.rs`) directly with `#[path]` attributes
//! at its crate root, so modules refer to each other only through
//! `crate::<module>` paths.
//!
//! The rule engine: [`packet`] turns headers into facts, [`rules`] defines
//! and validates rule blobs, [`compile`] turns a table's rule set into one
//! flat buffer, and [`eval`] walks that buffer for a packet.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
// Code outside tests must not panic on any input: no unchecked indexing,
// unwrap or panic. (The kernel build applies its own lints.)
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo
    )
)]

pub mod classify;
pub mod compile;
pub mod csum;
pub mod ct;
pub mod ct_msg;
pub mod ct_tcp;
pub mod eval;
pub mod hookcount;
pub mod hooks;
pub mod nat;
pub mod netlink;
pub mod packet;
pub mod rules;
pub mod ruleset_msg;
pub mod wire;

pub use wire::VERSION;
