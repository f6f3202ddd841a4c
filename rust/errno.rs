// SPDX-License-Identifier: GPL-2.0

//! Error codes that the 6.12 `kernel` crate does not name.

use crate::sys;
use kernel::error::Error;

/// `EMSGSIZE`: a message does not fit.
pub fn emsgsize() -> Error {
    Error::from_errno(-(sys::EMSGSIZE as i32))
}

/// `EOPNOTSUPP`: operation not supported.
pub fn eopnotsupp() -> Error {
    Error::from_errno(-(sys::EOPNOTSUPP as i32))
}
