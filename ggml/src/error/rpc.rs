//! Errors of ggml's RPC backend as this crate drives it (the `rpc` feature),
//! and the slot through which its callbacks report them.
//!
//! ggml calls a backend through function pointers that return nothing (a
//! tensor upload, a download, a buffer clear): the RPC client, called that
//! way, records what went wrong here ([`record`]), and the safe call that
//! reached it returns the error ([`guard`]). The slot is per thread: ggml
//! calls a backend on the thread that asked it to.

use std::cell::RefCell;
use std::fmt;
use std::time::Duration;

use super::{Error, Result};

/// What went wrong talking to an RPC worker, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// The worker's endpoint (`"127.0.0.1:50052"`), as given.
    pub endpoint: String,
    /// What the client was doing (`"connect"`, `"hello"`, `"upload"`,
    /// `"graph compute"`, ...).
    pub during: String,
    /// What happened.
    pub kind: RpcErrorKind,
}

/// The kinds of [`RpcError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RpcErrorKind {
    /// The endpoint does not parse as `host:port` (or names no address).
    InvalidEndpoint {
        /// Why.
        reason: String,
    },
    /// Nothing could be reached there (connection refused, no route, ...).
    Unreachable {
        /// The system's words.
        reason: String,
    },
    /// No answer within the bound: a worker that hangs, one busy with
    /// another client (ggml's worker serves one at a time), or a listener
    /// that is not a worker.
    NoAnswer {
        /// How long the client waited.
        waited: Duration,
    },
    /// The peer answered something ggml's RPC protocol does not allow.
    Protocol {
        /// What was wrong.
        reason: String,
    },
    /// The worker speaks another version of the protocol.
    Version {
        /// The worker's major version.
        major: u8,
        /// The worker's minor version.
        minor: u8,
        /// The worker's patch version.
        patch: u8,
    },
    /// The connection broke: the worker closed it (it refused a request,
    /// which closes the connection in ggml's protocol) or died.
    Disconnected {
        /// The system's words.
        reason: String,
    },
    /// The connection failed before; the device must be connected again
    /// (`Device::rpc`), its buffers and
    /// backends are gone with the worker's state.
    Broken {
        /// The first failure, in words.
        first: String,
    },
    /// The worker could not allocate the memory asked for.
    OutOfMemory {
        /// Bytes asked for.
        size: usize,
    },
    /// Something the protocol cannot carry (a custom op, a size over 32
    /// bits), refused before anything was sent.
    Unsupported {
        /// What and why.
        what: String,
    },
    /// Serving failed (the address could not be bound, ...).
    Serve {
        /// Why.
        reason: String,
    },
}

impl fmt::Display for RpcErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcErrorKind::InvalidEndpoint { reason } => write!(f, "invalid endpoint: {reason}"),
            RpcErrorKind::Unreachable { reason } => write!(f, "unreachable: {reason}"),
            RpcErrorKind::NoAnswer { waited } => write!(
                f,
                "no answer within {:.1} s (a hung worker, one serving another client, \
                 or not a ggml RPC worker)",
                waited.as_secs_f64()
            ),
            RpcErrorKind::Protocol { reason } => {
                write!(f, "not ggml's RPC protocol: {reason}")
            }
            RpcErrorKind::Version {
                major,
                minor,
                patch,
            } => write!(
                f,
                "the worker speaks protocol {major}.{minor}.{patch}, this build speaks {}.{}.x",
                crate::error::rpc::PROTOCOL.0,
                crate::error::rpc::PROTOCOL.1
            ),
            RpcErrorKind::Disconnected { reason } => {
                write!(f, "the worker closed the connection or died ({reason})")
            }
            RpcErrorKind::Broken { first } => write!(
                f,
                "the connection failed earlier ({first}); connect the device again"
            ),
            RpcErrorKind::OutOfMemory { size } => {
                write!(f, "the worker could not allocate {size} bytes")
            }
            RpcErrorKind::Unsupported { what } => write!(f, "cannot be sent: {what}"),
            RpcErrorKind::Serve { reason } => write!(f, "cannot serve: {reason}"),
        }
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RPC worker {} ({}): {}",
            self.endpoint, self.during, self.kind
        )
    }
}

impl std::error::Error for RpcError {}

/// The protocol version this client speaks (ggml's `RPC_PROTO_*_VERSION` of
/// the pinned source): major, minor, patch.
pub const PROTOCOL: (u8, u8, u8) = (7, 0, 0);

thread_local! {
    static FAULT: RefCell<Option<RpcError>> = const { RefCell::new(None) };
}

/// Records a fault met inside a callback ggml made on this thread (the first
/// one wins until [`guard`] takes it).
#[cfg_attr(not(feature = "rpc"), allow(dead_code))]
pub(crate) fn record(error: RpcError) {
    FAULT.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            *slot = Some(error);
        }
    });
}

/// Runs `f` (a call into ggml that may reach the RPC client) and returns the
/// fault the client recorded meanwhile, if any, before `f`'s own result: a
/// generic failure (`Compute`, `BufferAlloc`) of a call that failed because
/// a worker did is reported as the worker's failure.
pub(crate) fn guard<R>(f: impl FnOnce() -> Result<R>) -> Result<R> {
    clear();
    let result = f();
    match take() {
        Some(fault) => Err(fault),
        None => result,
    }
}

/// Forgets any fault recorded on this thread (before a call into ggml or
/// llama.cpp whose faults [`take`] reads after).
pub(crate) fn clear() {
    if cfg!(feature = "rpc") {
        FAULT.with(|slot| slot.borrow_mut().take());
    }
}

/// The fault recorded on this thread since [`clear`], as an error.
pub(crate) fn take() -> Option<Error> {
    if !cfg!(feature = "rpc") {
        return None;
    }
    FAULT
        .with(|slot| slot.borrow_mut().take())
        .map(|f| Error::Rpc(Box::new(f)))
}
