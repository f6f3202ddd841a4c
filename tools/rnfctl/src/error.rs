// SPDX-License-Identifier: GPL-2.0-only

//! Errors of rnfctl, their messages and exit codes.

use std::fmt;
use std::io;

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

    /// Process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::ModuleNotLoaded => EXIT_NOT_LOADED,
            Self::Kernel { errno, .. } if *errno == libc::EPERM => EXIT_PERMISSION,
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
            Self::Kernel { errno, .. } if *errno == libc::EPERM => f.write_str(
                "permission denied: rnf needs CAP_NET_ADMIN in this network namespace (run rnfctl as root)",
            ),
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
    fn protocol_error() {
        let e = Error::wire("status", WireError::Missing(3));
        assert_eq!(
            e.to_string(),
            "status: bad reply from the kernel: required netlink attribute missing (type 3)"
        );
    }
}
