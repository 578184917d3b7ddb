//! The worker: this machine's devices served with ggml's own server code
//! (`ggml_backend_rpc_start_server`), so that llama.cpp's clients and this
//! crate's reach it alike.

use std::convert::Infallible;
use std::ffi::CString;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;

use super::client;
use crate::backend::Device;
use crate::error::rpc::{RpcError, RpcErrorKind};
use crate::error::{Error, Result};

/// A worker to start: where it listens and what it serves.
///
/// ggml's server serves one client at a time, forever: [`Worker::serve`]
/// returns only when it cannot start. Run it as a process of its own (the
/// `rpc-worker` example) and stop it by ending that process.
#[derive(Debug, Clone)]
pub struct Worker {
    host: String,
    port: u16,
    devices: Vec<Device>,
    threads: usize,
    cache_dir: Option<PathBuf>,
    allow_remote: bool,
}

impl Worker {
    /// A worker on `127.0.0.1:port` serving the CPU with
    /// [`crate::max_threads`] threads.
    pub fn new(port: u16) -> Worker {
        Worker {
            host: "127.0.0.1".into(),
            port,
            devices: Vec::new(),
            threads: crate::max_threads(),
            cache_dir: None,
            allow_remote: false,
        }
    }

    /// Listens on `host` (a numeric IPv4 address, as ggml's server takes).
    /// An address other than loopback also needs
    /// [`allow_remote`](Worker::allow_remote).
    pub fn host(mut self, host: impl Into<String>) -> Worker {
        self.host = host.into();
        self
    }

    /// Serves these devices (default: the CPU).
    pub fn devices(mut self, devices: impl IntoIterator<Item = Device>) -> Worker {
        self.devices = devices.into_iter().collect();
        self
    }

    /// Threads of CPU backends.
    pub fn threads(mut self, n: usize) -> Worker {
        self.threads = n;
        self
    }

    /// Keeps large uploaded weights in `dir` too, so that a client loading
    /// the same model again sends only their hashes.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Worker {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Allows listening on an address other than loopback. ggml's protocol
    /// has no authentication or encryption and its server trusts the
    /// client: anyone who reaches the port can use (and crash) the worker.
    pub fn allow_remote(mut self, yes: bool) -> Worker {
        self.allow_remote = yes;
        self
    }

    /// The endpoint clients connect to.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Serves until the process ends (ggml's server has no stop); prints
    /// ggml's banner and each connection to stdout.
    ///
    /// # Errors
    /// [`Error::Rpc`] ([`RpcErrorKind::Serve`] or
    /// [`RpcErrorKind::InvalidEndpoint`]) when the worker cannot start: the
    /// host is not a numeric IPv4 address, or not loopback without
    /// [`allow_remote`](Worker::allow_remote), the port is 0 or taken,
    /// there are no threads, a device is itself a worker's, the cache
    /// directory cannot be made; or when ggml's server gives up.
    pub fn serve(&self) -> Result<Infallible> {
        crate::init::ensure()?;
        let endpoint = self.endpoint();
        let fail = |kind| {
            Error::Rpc(Box::new(RpcError {
                endpoint: endpoint.clone(),
                during: "serve".into(),
                kind,
            }))
        };
        let serve = |reason: String| fail(RpcErrorKind::Serve { reason });
        let ip: Ipv4Addr = self.host.parse().map_err(|_| {
            fail(RpcErrorKind::InvalidEndpoint {
                reason: format!(
                    "{:?} is not a numeric IPv4 address (ggml's server takes no other)",
                    self.host
                ),
            })
        })?;
        if !ip.is_loopback() && !self.allow_remote {
            return Err(serve(format!(
                "{ip} is not loopback: the protocol has no authentication or encryption; \
                 allow it explicitly (Worker::allow_remote, --allow-remote) on a trusted network only"
            )));
        }
        if self.port == 0 {
            return Err(fail(RpcErrorKind::InvalidEndpoint {
                reason: "port 0".into(),
            }));
        }
        if self.threads == 0 {
            return Err(serve("0 threads".into()));
        }
        let devices = if self.devices.is_empty() {
            vec![Device::cpu()?]
        } else {
            self.devices.clone()
        };
        if let Some(d) = devices
            .iter()
            .find(|d| client::device_of(d.raw().as_ptr()).is_some())
        {
            return Err(serve(format!(
                "{} is itself a worker's device (this client's devices cannot be served again)",
                d.name()
            )));
        }
        let cache = match &self.cache_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| serve(format!("cache directory {}: {e}", dir.display())))?;
                let text = dir.to_str().ok_or_else(|| {
                    serve(format!("cache directory {} is not UTF-8", dir.display()))
                })?;
                Some(CString::new(text).map_err(|_| serve("cache directory has a NUL".into()))?)
            }
            None => None,
        };
        // ggml's server reports a failed bind only on stderr: try the
        // address first for a precise error (its socket takes SO_REUSEADDR,
        // so the moment between is harmless).
        drop(TcpListener::bind((ip, self.port)).map_err(|e| serve(format!("cannot listen: {e}")))?);
        let c_endpoint =
            CString::new(endpoint.clone()).map_err(|_| serve("NUL in the endpoint".into()))?;
        let mut raw: Vec<ggml_sys::ggml_backend_dev_t> =
            devices.iter().map(|d| d.raw().as_ptr()).collect();
        // Preconditions: a NUL-terminated endpoint ggml parses (checked above), an
        // optional NUL-terminated directory, at least one thread and a
        // non-empty array of registry devices, all alive for the call (which
        // only returns on failure).
        // SAFETY: every precondition named just above is met.
        unsafe {
            ggml_sys::ggml_backend_rpc_start_server(
                c_endpoint.as_ptr(),
                cache.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
                self.threads,
                raw.len(),
                raw.as_mut_ptr(),
            );
        }
        Err(serve(
            "ggml's server stopped (its reason is on stderr)".into(),
        ))
    }
}
