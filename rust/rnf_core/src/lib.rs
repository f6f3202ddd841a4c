// SPDX-License-Identifier: GPL-2.0-only

//! Core of rnf shared by the kernel module and the `rnfctl` tool.
//!
//! This crate is `no_std`, uses no `alloc` and has no dependencies. The
//! kernel module includes `hooks.rs` and `wire.rs` directly with `#[path]`
//! attributes at its crate root, so modules refer to each other only through
//! `crate::hooks` and `crate::wire`.

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

pub mod hooks;
pub mod netlink;
pub mod packet;
pub mod rules;
pub mod wire;

pub use wire::VERSION;
