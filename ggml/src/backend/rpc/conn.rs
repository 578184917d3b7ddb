//! One connection to a worker: ggml's RPC protocol (`ggml-rpc.cpp` of the
//! pinned source, version 7) over TCP, with every wait bounded.
//!
//! A request is `| command (1 byte) | size (u64) | payload |`, a response
//! `| size (u64) | payload |`; some commands have no response. Integers are
//! in the host's byte order, as ggml writes them. Any failure (a timeout, a
//! closed connection, an answer of the wrong size) leaves the stream at an
//! unknown place in a message, so the connection is marked broken and every
//! later request fails at once with [`RpcErrorKind::Broken`].

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::error::rpc::{RpcError, RpcErrorKind, PROTOCOL};

/// The protocol's commands (`enum rpc_cmd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Cmd {
    AllocBuffer = 0,
    GetAlignment = 1,
    GetMaxSize = 2,
    BufferGetBase = 3,
    FreeBuffer = 4,
    BufferClear = 5,
    SetTensor = 6,
    SetTensorHash = 7,
    GetTensor = 8,
    CopyTensor = 9,
    GraphCompute = 10,
    GetDeviceMemory = 11,
    InitTensor = 12,
    GetAllocSize = 13,
    Hello = 14,
    DeviceCount = 15,
    GraphRecompute = 16,
    MemsetTensor = 17,
}

/// Size of the transport capabilities in the hello (`RPC_CONN_CAPS_SIZE`);
/// all zero: plain TCP.
const CONN_CAPS: usize = 24;

/// Devices one worker may serve.
pub(crate) const MAX_DEVICES: u32 = 256;

/// The bounds a connection works within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// Connecting and the protocol's hello.
    pub connect: Duration,
    /// Every later wait: one read or write of a request or response, a
    /// computation.
    pub io: Duration,
}

/// Bytes moved over one connection, both ways.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    /// Graphs sent whole, and graphs the worker computed again from its copy.
    pub graphs: AtomicU64,
    pub recomputes: AtomicU64,
}

/// A connection to a worker.
#[derive(Debug)]
pub(crate) struct Conn {
    endpoint: String,
    bounds: Bounds,
    /// The device count the worker reported.
    pub devices: u32,
    pub traffic: Traffic,
    state: Mutex<State>,
    /// The last graph sent to each device, which the worker keeps and
    /// computes again on request.
    graphs: Vec<Mutex<Option<Vec<u8>>>>,
    /// Allocation sizes the worker gave, by tensor shape.
    pub alloc_sizes: Mutex<HashMap<Vec<u8>, usize>>,
}

#[derive(Debug)]
struct State {
    stream: Option<TcpStream>,
    broken: Option<String>,
}

/// A request's failure, before it is given the endpoint and the step.
type Fail = RpcErrorKind;

impl Conn {
    /// Connects to `endpoint` (`host:port`), says hello and asks for the
    /// device count, each step bounded.
    pub(crate) fn open(endpoint: &str, bounds: Bounds) -> Result<Conn, RpcError> {
        let err = |during: &str, kind| RpcError {
            endpoint: endpoint.to_owned(),
            during: during.to_owned(),
            kind,
        };
        let unreachable = |e: &io::Error| {
            err(
                "connect",
                Fail::Unreachable {
                    reason: e.to_string(),
                },
            )
        };
        let addrs = resolve(endpoint).map_err(|k| err("parse the endpoint", k))?;
        let mut last = None;
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, bounds.connect) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = stream.ok_or_else(|| {
            let e = last.unwrap_or_else(|| io::Error::other("no address"));
            if e.kind() == io::ErrorKind::TimedOut {
                let waited = bounds.connect;
                err("connect", Fail::NoAnswer { waited })
            } else {
                unreachable(&e)
            }
        })?;
        let setup = stream
            .set_nodelay(true)
            .and_then(|()| stream.set_read_timeout(Some(bounds.connect)))
            .and_then(|()| stream.set_write_timeout(Some(bounds.connect)));
        setup.map_err(|e| unreachable(&e))?;
        let conn = Conn {
            endpoint: endpoint.to_owned(),
            bounds,
            devices: 0,
            traffic: Traffic::default(),
            state: Mutex::new(State {
                stream: Some(stream),
                broken: None,
            }),
            graphs: Vec::new(),
            alloc_sizes: Mutex::new(HashMap::new()),
        };
        // Hello: the versions must agree on the major number, and the
        // worker's minor may not be newer than ours.
        let mut hello = [0u8; 4 + CONN_CAPS];
        conn.request(
            Cmd::Hello,
            &[&[0u8; CONN_CAPS]],
            Some(&mut hello),
            bounds.connect,
        )
        .map_err(|k| err("hello", k))?;
        let (major, minor, patch) = (hello[0], hello[1], hello[2]);
        if major != PROTOCOL.0 || minor > PROTOCOL.1 {
            return Err(err(
                "hello",
                Fail::Version {
                    major,
                    minor,
                    patch,
                },
            ));
        }
        let mut count = [0u8; 4];
        conn.request(Cmd::DeviceCount, &[], Some(&mut count), bounds.connect)
            .map_err(|k| err("device count", k))?;
        let devices = u32::from_ne_bytes(count);
        if devices == 0 || devices > MAX_DEVICES {
            return Err(err(
                "device count",
                Fail::Protocol {
                    reason: format!("{devices} devices (1 to {MAX_DEVICES} are taken)"),
                },
            ));
        }
        {
            let state = conn.lock();
            if let Some(s) = &state.stream {
                let timeouts = s
                    .set_read_timeout(Some(bounds.io))
                    .and_then(|()| s.set_write_timeout(Some(bounds.io)));
                timeouts.map_err(|e| unreachable(&e))?;
            }
        }
        let graphs = (0..devices).map(|_| Mutex::new(None)).collect();
        Ok(Conn {
            devices,
            graphs,
            ..conn
        })
    }

    /// Whether a request failed on this connection.
    pub(crate) fn is_broken(&self) -> bool {
        self.lock().broken.is_some()
    }

    /// An [`RpcError`] of this connection.
    pub(crate) fn error(&self, during: &str, kind: RpcErrorKind) -> RpcError {
        RpcError {
            endpoint: self.endpoint.clone(),
            during: during.to_owned(),
            kind,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half
        // written in a way that matters: a broken stream is marked broken.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `cmd` with `payload` (the concatenation of its parts) and, for
    /// commands with a response, reads exactly `response.len()` bytes into
    /// `response`; `wait` bounds the first byte of the response (a
    /// computation runs before it comes).
    pub(crate) fn request(
        &self,
        cmd: Cmd,
        payload: &[&[u8]],
        response: Option<&mut [u8]>,
        wait: Duration,
    ) -> Result<(), RpcErrorKind> {
        let mut state = self.lock();
        if let Some(first) = &state.broken {
            return Err(Fail::Broken {
                first: first.clone(),
            });
        }
        let Some(stream) = state.stream.as_mut() else {
            return Err(Fail::Broken {
                first: "closed".into(),
            });
        };
        let result = exchange(
            stream,
            cmd,
            payload,
            response,
            wait,
            self.bounds.io,
            &self.traffic,
        );
        if let Err(kind) = &result {
            if let Some(stream) = state.stream.take() {
                // Best effort: the peer may be gone already.
                let _ = stream.shutdown(Shutdown::Both);
            }
            state.broken = Some(kind.to_string());
        }
        result
    }

    /// Breaks the connection because of an answer that cannot be used.
    pub(crate) fn poison(&self, reason: &str) {
        let mut state = self.lock();
        if let Some(stream) = state.stream.take() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        if state.broken.is_none() {
            state.broken = Some(format!("not ggml's RPC protocol: {reason}"));
        }
    }

    /// Forgets the graphs the worker keeps: it drops them when any buffer
    /// is freed (their nodes may point into it).
    pub(crate) fn forget_graphs(&self) {
        for g in &self.graphs {
            *g.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    /// The last graph sent to `device` (held while a new one is sent).
    pub(crate) fn last_graph(&self, device: u32) -> MutexGuard<'_, Option<Vec<u8>>> {
        static NONE: Mutex<Option<Vec<u8>>> = Mutex::new(None);
        self.graphs
            .get(device as usize)
            .unwrap_or(&NONE)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The bound of ordinary waits.
    pub(crate) fn io_bound(&self) -> Duration {
        self.bounds.io
    }
}

/// One request and its response on `stream`.
fn exchange(
    stream: &mut TcpStream,
    cmd: Cmd,
    payload: &[&[u8]],
    response: Option<&mut [u8]>,
    wait: Duration,
    io_bound: Duration,
    traffic: &Traffic,
) -> Result<(), Fail> {
    let size: usize = payload.iter().map(|p| p.len()).sum();
    let mut head = [0u8; 9];
    head[0] = cmd as u8;
    head[1..].copy_from_slice(&(size as u64).to_ne_bytes());
    let write = |stream: &mut TcpStream, bytes: &[u8]| {
        stream
            .write_all(bytes)
            .map_err(|e| io_failure(&e, io_bound))
    };
    write(stream, &head)?;
    for part in payload {
        write(stream, part)?;
    }
    stream.flush().map_err(|e| io_failure(&e, io_bound))?;
    traffic
        .sent
        .fetch_add((head.len() + size) as u64, Ordering::Relaxed);
    let Some(response) = response else {
        return Ok(());
    };
    // The first byte may wait for a computation: its own bound.
    let mut len = [0u8; 8];
    if wait != io_bound {
        stream
            .set_read_timeout(Some(wait))
            .map_err(|e| io_failure(&e, wait))?;
    }
    let first = read_exact(stream, &mut len[..1], wait);
    if wait != io_bound {
        stream
            .set_read_timeout(Some(io_bound))
            .map_err(|e| io_failure(&e, io_bound))?;
    }
    first?;
    read_exact(stream, &mut len[1..], io_bound)?;
    let len = u64::from_ne_bytes(len);
    if len != response.len() as u64 {
        return Err(Fail::Protocol {
            reason: format!(
                "a response of {len} bytes where {} were expected (command {cmd:?})",
                response.len()
            ),
        });
    }
    read_exact(stream, response, io_bound)?;
    traffic
        .received
        .fetch_add(8 + response.len() as u64, Ordering::Relaxed);
    Ok(())
}

fn read_exact(stream: &mut TcpStream, buf: &mut [u8], bound: Duration) -> Result<(), Fail> {
    stream.read_exact(buf).map_err(|e| io_failure(&e, bound))
}

/// An I/O error as a failure kind: a timeout is a worker that does not
/// answer, anything else a connection that broke.
fn io_failure(e: &io::Error, bound: Duration) -> Fail {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Fail::NoAnswer { waited: bound },
        io::ErrorKind::UnexpectedEof => Fail::Disconnected {
            reason: "end of stream".into(),
        },
        _ => Fail::Disconnected {
            reason: e.to_string(),
        },
    }
}

/// `host:port` to socket addresses (a name is resolved; ggml's own worker
/// listens on a numeric IPv4 address).
pub(crate) fn resolve(endpoint: &str) -> Result<Vec<SocketAddr>, Fail> {
    let invalid = |reason: String| Fail::InvalidEndpoint { reason };
    let (host, port) = endpoint
        .rsplit_once(':')
        .ok_or_else(|| invalid(format!("{endpoint:?} is not host:port")))?;
    if host.is_empty() {
        return Err(invalid(format!("{endpoint:?} has no host")));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| invalid(format!("{port:?} is not a port number (1 to 65535)")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| invalid(format!("{host:?} does not resolve: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(invalid(format!("{host:?} names no address")));
    }
    Ok(addrs)
}
