//! Past one machine: ggml's RPC backend (the `rpc` feature). A worker
//! ([`Worker`], the `rpc-worker` example) serves its machine's devices with
//! ggml's own server code; a client uses them as [`Device`]s like any other:
//! backends, buffers, the graph allocator, the [`Scheduler`] and llama.cpp's
//! layer placement all work on them.
//!
//! ```no_run
//! use ggml::backend::{Backend, Device, Scheduler};
//!
//! # fn main() -> ggml::Result<()> {
//! // Workers started elsewhere: `rpc-worker --host 10.0.0.2 --port 50052 --allow-remote`.
//! let a = Device::rpc("10.0.0.2:50052")?;
//! let b = Device::rpc("10.0.0.3:50052")?;
//! println!("{}: {} MiB free", a.name(), a.memory().free >> 20);
//! let sched = Scheduler::new(vec![a.backend()?, b.backend()?, Backend::cpu()?], 2048)?;
//! # let _ = sched;
//! # Ok(())
//! # }
//! ```
//!
//! # The client, and why it is written here
//!
//! ggml's own client (`ggml_backend_rpc_init`) aborts the process when an
//! endpoint does not parse, a connection fails, a handshake fails or a worker
//! dies mid-request (from a background thread), and waits forever for a
//! worker that stops answering; it reports every computation as a success.
//! None of that can be caught from outside. So this crate speaks ggml's RPC
//! protocol itself (the same messages, version 7, checked against ggml's own
//! worker in the tests) as a ggml backend implemented in Rust over ggml's
//! backend interface: every wait is bounded ([`RpcOptions`]), every failure
//! (nothing listening, a listener that never answers or answers garbage, a
//! wrong protocol version, a worker killed or hung mid-computation or
//! mid-upload) is an [`Error::Rpc`] naming the endpoint,
//! the step and what happened, and the process goes on: local computations
//! are unaffected, and data the caller holds is never half-overwritten (a
//! download lands in the caller's memory only once complete).
//!
//! A computation's failure is known when it returns: the client follows
//! each graph with a small request the worker answers only once the graph
//! is done (the protocol itself sends no answer to a computation). A graph
//! identical to the last one sent to a device is not sent again: the worker
//! computes its stored copy (`GRAPH_RECOMPUTE`).
//!
//! After a failure, a device's connection is broken: its buffers and
//! backends fail at once, and [`Device::rpc`] connects it again (a worker
//! that restarted has none of the old buffers).
//!
//! What a worker cannot compute for us is refused before it is sent: custom
//! ops (their functions live in this process) and tensors whose sizes or
//! strides pass 32 bits (the protocol carries them in 32 bits and would
//! truncate them silently). What the worker's own device lacks is the
//! worker's business: ggml's worker checks little, and an op its kernels
//! cannot run may end the worker, which this process sees as a
//! disconnection, an error.
//!
//! # Security
//!
//! ggml's protocol has no authentication and no encryption, and its worker
//! trusts its client: run workers on trusted networks only. [`Worker`]
//! binds loopback unless told otherwise.

mod client;
mod conn;
mod wire;
mod worker;

use std::time::Duration;

pub use crate::error::rpc::{RpcError, RpcErrorKind, PROTOCOL};
pub use worker::Worker;

use super::{raw, Device};
use crate::error::{Error, Result};

#[cfg(doc)]
use super::Scheduler;

/// How long the client waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcOptions {
    /// Connecting and the protocol's hello (default 5 s). A worker busy
    /// with another client (ggml's serves one at a time) accepts the
    /// connection and answers nothing: this bound is how long that takes to
    /// become an error.
    pub connect_timeout: Duration,
    /// Every later wait: each read or write of a request or response, and
    /// one whole computation (default 30 s).
    pub timeout: Duration,
}

impl Default for RpcOptions {
    fn default() -> Self {
        RpcOptions {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
        }
    }
}

/// Bytes moved over a connection so far, both ways, headers included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Traffic {
    /// To the worker.
    pub sent: u64,
    /// From the worker.
    pub received: u64,
    /// Graphs sent whole.
    pub graphs: u64,
    /// Graphs the worker computed again from its copy of the last one
    /// (a graph identical to the last one sent to the device).
    pub recomputes: u64,
}

/// Every device the worker at `endpoint` serves.
///
/// # Errors
/// [`Error::Rpc`]: the endpoint does not parse, nothing answers there, the
/// peer does not speak ggml's RPC protocol or another version of it, or it
/// does not answer within `options`'s bounds.
pub fn devices(endpoint: &str, options: &RpcOptions) -> Result<Vec<Device>> {
    crate::init::ensure()?;
    let bounds = conn::Bounds {
        connect: options.connect_timeout,
        io: options.timeout,
    };
    let devs = client::connect(endpoint, bounds).map_err(|e| Error::Rpc(Box::new(e)))?;
    devs.into_iter()
        .map(|d| {
            // SAFETY: a device of this client, which lives for the process.
            unsafe { raw::device(d.as_ptr()) }.map(Device::from_raw)
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Error::NoDevice {
            wanted: format!("RPC worker {endpoint}"),
            advice: String::new(),
        })
}

/// Bytes moved so far over `device`'s current connection; `None` for a
/// device that is not a worker's.
pub fn traffic(device: &Device) -> Option<Traffic> {
    let conn = client::device_of(device.raw().as_ptr())?.conn()?;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let t = &conn.traffic;
    Some(Traffic {
        sent: load(&t.sent),
        received: load(&t.received),
        graphs: load(&t.graphs),
        recomputes: load(&t.recomputes),
    })
}

impl Device {
    /// Device 0 of the RPC worker at `endpoint` (`"host:port"`), with the
    /// default [`RpcOptions`]. Connecting again to an endpoint already
    /// connected returns the same device; after a failure it reconnects.
    ///
    /// # Errors
    /// As [`devices`].
    pub fn rpc(endpoint: &str) -> Result<Device> {
        Device::rpc_with(endpoint, &RpcOptions::default())
    }

    /// Device 0 of the RPC worker at `endpoint`, with `options` (which
    /// apply when a connection is made: an endpoint already connected and
    /// healthy keeps its connection and bounds).
    ///
    /// # Errors
    /// As [`devices`].
    pub fn rpc_with(endpoint: &str, options: &RpcOptions) -> Result<Device> {
        devices(endpoint, options)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::NoDevice {
                wanted: format!("RPC worker {endpoint}"),
                advice: String::new(),
            })
    }

    /// The endpoint of the worker serving this device, for a worker's device.
    pub fn rpc_endpoint(&self) -> Option<String> {
        client::device_of(self.raw().as_ptr()).map(|d| d.endpoint.clone())
    }

    /// Free and total memory of a worker's device, or the error that asking
    /// met ([`Device::memory`] reports 0 for both then).
    ///
    /// # Errors
    /// [`Error::Rpc`]; [`Error::NotSupported`] for a device that is not a
    /// worker's.
    pub fn rpc_memory(&self) -> Result<super::DeviceMemory> {
        let d = client::device_of(self.raw().as_ptr()).ok_or(Error::NotSupported {
            backend: self.name(),
            what: "asking an RPC worker",
        })?;
        crate::error::rpc::guard(|| {
            let (free, total) = client::memory(d).unwrap_or((0, 0));
            Ok(super::DeviceMemory { free, total })
        })
    }
}

/// Why a worker's device cannot compute `node`, checked before it is sent.
///
/// # Safety
/// `node` is a live tensor with live sources.
pub(crate) unsafe fn refusal(node: *const ggml_sys::ggml_tensor) -> Option<String> {
    // SAFETY: the caller's contract.
    unsafe { client::refusal(node) }
}
