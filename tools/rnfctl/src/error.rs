// SPDX-License-Identifier: GPL-2.0-only

//! Errors of rnfctl, their messages and exit codes.

use std::fmt;
use std::io;

use rnf_core::rules::{Table, MAX_CHAINS, MAX_JUMP_DEPTH, MAX_RULES, MAX_RULE_SIZE};
use rnf_core::wire::WireError;

/// Exit code for errors without a more specific one.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code when the rnf kernel module is not loaded.
pub const EXIT_NOT_LOADED: u8 = 2;
/// Exit code when the kernel refused for lack of privilege.
pub const EXIT_PERMISSION: u8 = 4;

/// An error of an rnfctl operation.
#[derive(Debug)]
pub enum Error {
    /// The generic netlink family "rnf" does not exist.
    ModuleNotLoaded,
    /// The kernel answered a request with an error.
    Kernel {
        /// What rnfctl was doing, e.g. `"status"`.
        op: &'static str,
        /// Positive errno.
        errno: i32,
        /// Extended-ack message, if the kernel sent one.
        ext_ack: Option<String>,
    },
    /// A system call on the netlink socket failed.
    Io {
        /// What rnfctl was doing.
        op: &'static str,
        /// The error.
        err: io::Error,
    },
    /// The kernel refused a rule-management request; `target` says what
    /// the request was about, so the message can name it.
    Refused {
        /// What rnfctl was doing, e.g. `"add"`.
        op: &'static str,
        /// Positive errno.
        errno: i32,
        /// Extended-ack message, if the kernel sent one.
        ext_ack: Option<String>,
        /// What the request named.
        target: Box<Target>,
    },
    /// The kernel refused a connection-tracking request.
    CtRefused {
        /// What rnfctl was doing, e.g. `"conntrack limit"`.
        op: &'static str,
        /// Positive errno.
        errno: i32,
        /// Extended-ack message, if the kernel sent one.
        ext_ack: Option<String>,
    },
    /// The command line or a rule file is wrong; nothing was sent.
    Invalid {
        /// What rnfctl was doing.
        op: &'static str,
        /// What is wrong, naming the word.
        message: String,
    },
    /// The kernel's answer could not be understood.
    Protocol {
        /// What rnfctl was doing.
        op: &'static str,
        /// What is wrong with it.
        detail: String,
    },
}

impl Error {
    /// A protocol error caused by malformed netlink data.
    pub fn wire(op: &'static str, e: WireError) -> Self {
        Self::Protocol {
            op,
            detail: e.to_string(),
        }
    }

    /// A local error in the command line or a rule file.
    pub fn invalid(op: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            op,
            message: message.into(),
        }
    }

    /// Attaches what a request was about to the kernel's refusal of it.
    pub fn about(self, target: &Target) -> Self {
        match self {
            Self::Kernel { op, errno, ext_ack } => Self::Refused {
                op,
                errno,
                ext_ack,
                target: Box::new(target.clone()),
            },
            e => e,
        }
    }

    /// Words the kernel's refusal of a connection-tracking request for
    /// people; other errors are kept.
    pub fn conntrack(self) -> Self {
        match self {
            Self::Kernel { op, errno, ext_ack } => Self::CtRefused { op, errno, ext_ack },
            e => e,
        }
    }

    /// Process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::ModuleNotLoaded => EXIT_NOT_LOADED,
            Self::Kernel { errno, .. }
            | Self::Refused { errno, .. }
            | Self::CtRefused { errno, .. }
                if *errno == libc::EPERM =>
            {
                EXIT_PERMISSION
            }
            _ => EXIT_FAILURE,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ModuleNotLoaded => f.write_str(
                "the rnf kernel module is not loaded (load it with 'modprobe rnf' or 'insmod rnf.ko')",
            ),
            Self::Kernel { errno, .. }
            | Self::Refused { errno, .. }
            | Self::CtRefused { errno, .. }
                if *errno == libc::EPERM =>
            {
                f.write_str(PERMISSION_DENIED)
            }
            Self::CtRefused { op, errno, ext_ack } => {
                let ack = ext_ack.as_deref().filter(|m| !m.is_empty());
                match (*errno, ack) {
                    (libc::EOPNOTSUPP, _) => write!(
                        f,
                        "{op}: the loaded rnf module does not support this command (is it older than rnfctl?)"
                    ),
                    (libc::EINVAL | libc::ERANGE, Some(m)) => {
                        write!(f, "{op}: the kernel refused the value: {m}")
                    }
                    (libc::EINVAL | libc::ERANGE, None) => {
                        write!(f, "{op}: the kernel refused the value as invalid")
                    }
                    (libc::ENOENT, None) => write!(f, "{op}: no such flow"),
                    (libc::ENOMEM, None) => write!(f, "{op}: the kernel ran out of memory"),
                    (e, Some(m)) => write!(f, "{op}: {}: {m}", describe_errno(e)),
                    (e, None) => write!(f, "{op}: {}", describe_errno(e)),
                }
            }
            Self::Refused {
                op,
                errno,
                ext_ack,
                target,
            } => {
                if *errno == libc::ESTALE {
                    return match target.generation {
                        Some(g) => write!(
                            f,
                            "the rule set changed since generation {g} (another writer); list again and retry"
                        ),
                        None => f.write_str(
                            "the rule set changed during the request (another writer); list again and retry",
                        ),
                    };
                }
                write!(f, "{op}: {}", refusal(op, *errno, ext_ack.as_deref(), target))?;
                if let Some(msg) = ext_ack.as_deref().filter(|m| !m.is_empty()) {
                    write!(f, " (kernel: {msg})")?;
                }
                Ok(())
            }
            Self::Invalid { op, message } => write!(f, "{op}: {message}"),
            Self::Kernel { op, errno, ext_ack } => {
                write!(f, "{op}: {}", describe_errno(*errno))?;
                if let Some(msg) = ext_ack.as_deref().filter(|m| !m.is_empty()) {
                    write!(f, ": {msg}")?;
                }
                Ok(())
            }
            Self::Io { op, err } => match err.raw_os_error() {
                Some(errno) => write!(f, "{op}: {}", describe_errno(errno)),
                None => write!(f, "{op}: {err}"),
            },
            Self::Protocol { op, detail } => write!(f, "{op}: bad reply from the kernel: {detail}"),
        }
    }
}

impl std::error::Error for Error {}

const PERMISSION_DENIED: &str =
    "permission denied: rnf needs CAP_NET_ADMIN in this network namespace (run rnfctl as root)";

/// What a rule-management request named, for wording the kernel's refusal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// Table.
    pub table: Option<Table>,
    /// Chain.
    pub chain: Option<String>,
    /// Rule handle.
    pub handle: Option<u64>,
    /// The request named a rule by its text (delete by rule).
    pub by_rule: bool,
    /// New chain name (rename).
    pub new_name: Option<String>,
    /// Generation the writer sent.
    pub generation: Option<u64>,
    /// 0-based position of an insert.
    pub position: Option<u32>,
}

impl Target {
    fn table_name(&self) -> &'static str {
        self.table.map_or("?", Table::name)
    }

    /// `"chain 'FOO' in table filter"`, or as much of it as is known.
    fn chain_words(&self) -> String {
        match (&self.chain, self.table) {
            (Some(c), Some(t)) => format!("chain '{c}' in table {}", t.name()),
            (Some(c), None) => format!("chain '{c}'"),
            (None, Some(t)) => format!("table {}", t.name()),
            (None, None) => "the rule set".to_string(),
        }
    }

    /// A hint when a chain name differs from a built-in one only in case.
    fn case_hint(&self) -> String {
        let (Some(c), Some(t)) = (&self.chain, self.table) else {
            return String::new();
        };
        match t
            .hooks()
            .iter()
            .find(|h| h.name().eq_ignore_ascii_case(c) && h.name() != c)
        {
            Some(h) => format!(
                "; chain names are case-sensitive: did you mean {}?",
                h.name()
            ),
            None => String::new(),
        }
    }
}

/// Words for a kernel refusal of a rule-management request, naming what
/// the request was about. Never a bare errno number.
fn refusal(op: &str, errno: i32, ext_ack: Option<&str>, t: &Target) -> String {
    let ack = ext_ack.unwrap_or("").to_ascii_lowercase();
    let table = t.table_name();
    let chain = t.chain.as_deref().unwrap_or("?");
    match errno {
        libc::ENOENT if ack.contains("jump") || ack.contains("goto") => format!(
            "the rule jumps or goes to a chain that table {table} does not have (create it with: rnfctl chain add {table} NAME)"
        ),
        libc::ENOENT => {
            let mentions_chain = ack.contains("chain");
            let mentions_rule = ack.contains("rule") || ack.contains("handle");
            let rule_named = t.handle.is_some() || t.by_rule;
            if rule_named && (mentions_rule || !mentions_chain) {
                match t.handle {
                    Some(h) => format!("no rule with handle {h} in chain '{chain}' of table {table}"),
                    None => format!(
                        "no rule in chain '{chain}' of table {table} is exactly like this one \
                         (list the chain to see its rules, or delete by handle)"
                    ),
                }
            } else if t.chain.is_some() {
                format!("no chain '{chain}' in table {table}{}", t.case_hint())
            } else {
                format!("{} not found", t.chain_words())
            }
        }
        libc::EEXIST => match (op, &t.new_name) {
            ("chain rename", Some(n)) => format!("table {table} already has a chain '{n}'"),
            _ => format!("table {table} already has a chain '{chain}'"),
        },
        libc::EBUSY | libc::ENOTEMPTY => {
            let what = t.chain_words();
            if ack.contains("not empty") {
                format!("{what} still has rules (empty it first with: rnfctl flush {table} {chain})")
            } else if ack.contains("jump") || ack.contains("goto") {
                format!("rules jump or go to {what}; delete or replace them first")
            } else {
                format!("{what} is in use: it has rules, or rules jump or go to it")
            }
        }
        libc::ELOOP => format!(
            "the jumps and gotos between chains would form a loop or nest deeper than {MAX_JUMP_DEPTH} chains"
        ),
        libc::ERANGE if t.position.is_some() => format!(
            "position {} is past the end of chain '{chain}' in table {table} ('add' appends)",
            u64::from(t.position.unwrap_or(0)) + 1
        ),
        libc::E2BIG | libc::ENOSPC | libc::EMSGSIZE => format!(
            "a limit of rnf was reached (at most {MAX_RULES} rules per table, {MAX_CHAINS} chains per table, {MAX_RULE_SIZE} bytes per rule)"
        ),
        libc::EINVAL if ack.contains("jump or goto to a chain") => format!(
            "the rule jumps or goes to a chain that table {table} does not have (create it with: rnfctl chain add {table} NAME)"
        ),
        libc::EINVAL => "the kernel refused the request as invalid".to_string(),
        libc::EOPNOTSUPP => "the loaded rnf module does not support this command (is it older than rnfctl?)".to_string(),
        libc::ENOMEM => "the kernel ran out of memory".to_string(),
        _ => describe_errno(errno),
    }
}

/// `"<description in words> (<ENAME>)"` for a positive errno, for example
/// `"Invalid argument (EINVAL)"`. Unknown numbers read `"... (errno 1234)"`.
pub fn describe_errno(errno: i32) -> String {
    let text = io::Error::from_raw_os_error(errno).to_string();
    // std appends " (os error N)"; the name replaces it.
    let words = match text.rfind(" (os error ") {
        Some(i) => &text[..i],
        None => text.as_str(),
    };
    match errno_name(errno) {
        Some(name) => format!("{words} ({name})"),
        None => format!("{words} (errno {errno})"),
    }
}

/// Symbolic name of a (positive) errno, for the errors netlink and
/// rnf are likely to return.
pub fn errno_name(errno: i32) -> Option<&'static str> {
    const NAMES: &[(i32, &str)] = &[
        (libc::EPERM, "EPERM"),
        (libc::ENOENT, "ENOENT"),
        (libc::ESRCH, "ESRCH"),
        (libc::EINTR, "EINTR"),
        (libc::EIO, "EIO"),
        (libc::ENXIO, "ENXIO"),
        (libc::E2BIG, "E2BIG"),
        (libc::EBADF, "EBADF"),
        (libc::EAGAIN, "EAGAIN"),
        (libc::ENOMEM, "ENOMEM"),
        (libc::EACCES, "EACCES"),
        (libc::EFAULT, "EFAULT"),
        (libc::EBUSY, "EBUSY"),
        (libc::EEXIST, "EEXIST"),
        (libc::ENODEV, "ENODEV"),
        (libc::ENOTDIR, "ENOTDIR"),
        (libc::EINVAL, "EINVAL"),
        (libc::ENFILE, "ENFILE"),
        (libc::EMFILE, "EMFILE"),
        (libc::ENOSPC, "ENOSPC"),
        (libc::ERANGE, "ERANGE"),
        (libc::EDEADLK, "EDEADLK"),
        (libc::ENAMETOOLONG, "ENAMETOOLONG"),
        (libc::ENOSYS, "ENOSYS"),
        (libc::ENOTEMPTY, "ENOTEMPTY"),
        (libc::ELOOP, "ELOOP"),
        (libc::ENOMSG, "ENOMSG"),
        (libc::ENODATA, "ENODATA"),
        (libc::EPROTO, "EPROTO"),
        (libc::EBADMSG, "EBADMSG"),
        (libc::EOVERFLOW, "EOVERFLOW"),
        (libc::EMSGSIZE, "EMSGSIZE"),
        (libc::EPROTONOSUPPORT, "EPROTONOSUPPORT"),
        (libc::EOPNOTSUPP, "EOPNOTSUPP"),
        (libc::EAFNOSUPPORT, "EAFNOSUPPORT"),
        (libc::EADDRINUSE, "EADDRINUSE"),
        (libc::EADDRNOTAVAIL, "EADDRNOTAVAIL"),
        (libc::ENETDOWN, "ENETDOWN"),
        (libc::ENOBUFS, "ENOBUFS"),
        (libc::ECONNREFUSED, "ECONNREFUSED"),
        (libc::ETIMEDOUT, "ETIMEDOUT"),
        (libc::EALREADY, "EALREADY"),
        (libc::EINPROGRESS, "EINPROGRESS"),
        (libc::ENOTSUP, "ENOTSUP"),
    ];
    NAMES.iter().find(|(n, _)| *n == errno).map(|(_, s)| *s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_not_loaded() {
        let e = Error::ModuleNotLoaded;
        assert_eq!(
            e.to_string(),
            "the rnf kernel module is not loaded (load it with 'modprobe rnf' or 'insmod rnf.ko')"
        );
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn permission_denied() {
        let e = Error::Kernel {
            op: "status",
            errno: libc::EPERM,
            ext_ack: Some("ignored".into()),
        };
        assert_eq!(
            e.to_string(),
            "permission denied: rnf needs CAP_NET_ADMIN in this network namespace (run rnfctl as root)"
        );
        assert_eq!(e.exit_code(), 4);
    }

    #[test]
    fn other_errno_with_and_without_ext_ack() {
        let e = Error::Kernel {
            op: "status",
            errno: libc::EINVAL,
            ext_ack: Some("unknown hook".into()),
        };
        assert_eq!(
            e.to_string(),
            "status: Invalid argument (EINVAL): unknown hook"
        );
        assert_eq!(e.exit_code(), 1);
        let e = Error::Kernel {
            op: "status",
            errno: libc::EOPNOTSUPP,
            ext_ack: None,
        };
        assert_eq!(
            e.to_string(),
            "status: Operation not supported (EOPNOTSUPP)"
        );
    }

    #[test]
    fn unknown_errno_is_not_bare() {
        let s = describe_errno(4000);
        assert!(s.ends_with("(errno 4000)"), "{s}");
        assert!(s.len() > "(errno 4000)".len(), "{s}");
        assert!(!s.contains("os error"), "{s}");
    }

    #[test]
    fn io_error_uses_names() {
        let e = Error::Io {
            op: "opening a netlink socket",
            err: io::Error::from_raw_os_error(libc::EAFNOSUPPORT),
        };
        assert_eq!(
            e.to_string(),
            "opening a netlink socket: Address family not supported by protocol (EAFNOSUPPORT)"
        );
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn conntrack_refusals() {
        let ct = |errno, ext_ack: Option<&str>| {
            Error::Kernel {
                op: "conntrack limit",
                errno,
                ext_ack: ext_ack.map(str::to_owned),
            }
            .conntrack()
        };
        let e = ct(libc::EINVAL, Some("limit must be at least 1"));
        assert_eq!(
            e.to_string(),
            "conntrack limit: the kernel refused the value: limit must be at least 1"
        );
        assert_eq!(e.exit_code(), 1);
        assert_eq!(
            ct(libc::EINVAL, None).to_string(),
            "conntrack limit: the kernel refused the value as invalid"
        );
        let e = ct(libc::EPERM, None);
        assert_eq!(e.to_string(), PERMISSION_DENIED);
        assert_eq!(e.exit_code(), 4);
        assert_eq!(
            ct(libc::EOPNOTSUPP, None).to_string(),
            "conntrack limit: the loaded rnf module does not support this command (is it older than rnfctl?)"
        );
        assert_eq!(
            ct(libc::EBUSY, Some("resizing")).to_string(),
            "conntrack limit: Device or resource busy (EBUSY): resizing"
        );
        assert!(matches!(
            Error::ModuleNotLoaded.conntrack(),
            Error::ModuleNotLoaded
        ));
    }

    #[test]
    fn protocol_error() {
        let e = Error::wire("status", WireError::Missing(3));
        assert_eq!(
            e.to_string(),
            "status: bad reply from the kernel: required netlink attribute missing (type 3)"
        );
    }
}
