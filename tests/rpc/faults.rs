//! Faults: each an `Err` of the right kind within the bound, the process
//! alive, and a local computation after it correct.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Result;
use ggml::backend::rpc::{RpcErrorKind, RpcOptions};
use ggml::backend::{Backend, Device};
use ggml::ndarray::Ix2;
use ggml::{Context, Error, Type};

use crate::common::{assert_close, values};
use crate::workers::{free_port, spawn, WorkerProc};

/// Short bounds, so that the tests wait little.
fn options() -> RpcOptions {
    RpcOptions {
        connect_timeout: Duration::from_secs(1),
        timeout: Duration::from_secs(3),
    }
}

/// The RPC error kind of a result, or a panic naming what came instead.
fn kind<T: std::fmt::Debug>(r: ggml::Result<T>) -> RpcErrorKind {
    match r {
        Err(Error::Rpc(e)) => {
            eprintln!("as expected: {e}");
            e.kind.clone()
        }
        other => panic!("expected an RPC error, got {other:?}"),
    }
}

/// A local computation, checked against ndarray: the process is usable.
fn local_still_works() -> Result<()> {
    let ctx = Context::new(1 << 20)?;
    let (av, bv) = (values((8, 16), 1), values((4, 16), 2));
    let (a, b) = (ctx.tensor_from_array(&av)?, ctx.tensor_from_array(&bv)?);
    let y = ctx.mul_mat(a, b)?;
    let graph = ctx.build_graph(&[y])?;
    let mut data = ctx.data()?;
    Backend::cpu()?.compute(&graph, &mut data)?;
    assert_close(&data.to_array_as::<f32, Ix2>(y)?, &bv.dot(&av.t()), 1e-5);
    Ok(())
}

/// Runs `f` and checks it returned within `bound` (plus scheduling slack).
fn within<R>(bound: Duration, f: impl FnOnce() -> R) -> R {
    let start = Instant::now();
    let r = f();
    let took = start.elapsed();
    assert!(
        took <= bound + Duration::from_secs(2),
        "took {took:?}, bound {bound:?}"
    );
    r
}

#[test]
fn an_endpoint_that_does_not_parse_is_an_error() -> Result<()> {
    for bad in [
        "nonsense",
        "127.0.0.1",
        ":50052",
        "127.0.0.1:",
        "127.0.0.1:0",
        "127.0.0.1:99999",
        "127.0.0.1:port",
        "no-such-host.invalid:50052",
    ] {
        let k = kind(Device::rpc_with(bad, &options()));
        assert!(
            matches!(k, RpcErrorKind::InvalidEndpoint { .. }),
            "{bad}: {k:?}"
        );
    }
    local_still_works()
}

#[test]
fn nothing_listening_is_an_error() -> Result<()> {
    let endpoint = format!("127.0.0.1:{}", free_port());
    let k = within(options().connect_timeout, || {
        kind(Device::rpc_with(&endpoint, &options()))
    });
    assert!(matches!(k, RpcErrorKind::Unreachable { .. }), "{k:?}");
    local_still_works()
}

/// A listener that accepts and then does `serve` with each connection.
fn fake(serve: fn(std::net::TcpStream)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = listener.local_addr().expect("addr").to_string();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || serve(stream));
        }
    });
    endpoint
}

#[test]
fn a_listener_that_never_answers_is_an_error_within_the_bound() -> Result<()> {
    let endpoint = fake(|s| {
        thread::sleep(Duration::from_secs(30));
        drop(s);
    });
    let k = within(options().connect_timeout, || {
        kind(Device::rpc_with(&endpoint, &options()))
    });
    assert!(matches!(k, RpcErrorKind::NoAnswer { .. }), "{k:?}");
    local_still_works()
}

#[test]
fn a_listener_that_answers_garbage_is_an_error() -> Result<()> {
    let endpoint = fake(|mut s| {
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        thread::sleep(Duration::from_secs(5));
    });
    let k = within(options().connect_timeout, || {
        kind(Device::rpc_with(&endpoint, &options()))
    });
    assert!(matches!(k, RpcErrorKind::Protocol { .. }), "{k:?}");
    local_still_works()
}

#[test]
fn a_worker_of_another_protocol_version_is_an_error() -> Result<()> {
    let endpoint = fake(|mut s| {
        // The hello request: command, size, 24 bytes of capabilities.
        let mut req = [0u8; 1 + 8 + 24];
        if s.read_exact(&mut req).is_ok() {
            let mut rsp = Vec::new();
            rsp.extend_from_slice(&28u64.to_ne_bytes());
            rsp.extend_from_slice(&[6, 1, 0, 0]);
            rsp.extend_from_slice(&[0; 24]);
            let _ = s.write_all(&rsp);
        }
        thread::sleep(Duration::from_secs(5));
    });
    let k = kind(Device::rpc_with(&endpoint, &options()));
    assert!(
        matches!(
            k,
            RpcErrorKind::Version {
                major: 6,
                minor: 1,
                patch: 0
            }
        ),
        "{k:?}"
    );
    local_still_works()
}

#[test]
fn a_busy_worker_is_an_error_within_the_bound() -> Result<()> {
    let w = spawn(1)?;
    // Another client holds the worker (ggml's serves one at a time).
    let mut other = std::net::TcpStream::connect(&w.endpoint)?;
    let mut hello = vec![14u8];
    hello.extend_from_slice(&24u64.to_ne_bytes());
    hello.extend_from_slice(&[0; 24]);
    other.write_all(&hello)?;
    let mut rsp = [0u8; 8 + 28];
    other.read_exact(&mut rsp)?;
    let k = within(options().connect_timeout, || {
        kind(Device::rpc_with(&w.endpoint, &options()))
    });
    assert!(matches!(k, RpcErrorKind::NoAnswer { .. }), "{k:?}");
    // Once the other client goes, the worker serves us.
    drop(other);
    let device = Device::rpc_with(&w.endpoint, &options())?;
    assert!(device.rpc_memory()?.total > 0);
    local_still_works()
}

/// A long computation on `device` (zeros, 1024×1024 products chained):
/// seconds of work for one thread.
fn long_computation(device: Device, f: impl FnOnce()) -> Result<ggml::Result<()>> {
    let mut backend = Backend::new(device)?;
    let ctx = Context::new_no_alloc(1 << 22)?;
    let w = ctx.new_tensor(Type::F32, &[1024, 1024])?;
    let x = ctx.new_tensor(Type::F32, &[1024, 1024])?;
    ctx.allocate(backend.buffer_type())?;
    let mut y = x;
    for _ in 0..200 {
        y = ctx.mul_mat(w, y)?;
    }
    let graph = ctx.build_graph(&[y])?;
    let mut allocator = ggml::backend::GraphAllocator::for_backend(&backend)?;
    allocator.allocate(&graph)?;
    let mut data = ctx.data()?;
    f();
    Ok(backend.compute(&graph, &mut data))
}

/// `signal` sent to `w` after `delay`, from another thread.
fn later(w: &WorkerProc, delay: Duration, signal: &'static str) -> thread::JoinHandle<()> {
    let pid = w.pid();
    thread::spawn(move || {
        thread::sleep(delay);
        let _ = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status();
    })
}

/// The error of a long computation on `w`'s `device` during which `signal`
/// reaches the worker (300 ms in), returned within the bound.
fn computation_interrupted(
    w: &WorkerProc,
    device: Device,
    signal: &'static str,
) -> Result<RpcErrorKind> {
    let mut sender = None;
    let result = within(options().timeout, || {
        long_computation(device, || {
            sender = Some(later(w, Duration::from_millis(300), signal))
        })
    })?;
    sender
        .expect("started")
        .join()
        .expect("the signal's thread");
    Ok(kind(result))
}

#[test]
fn a_worker_killed_during_a_computation_is_an_error() -> Result<()> {
    let w = spawn(1)?;
    let device = Device::rpc_with(&w.endpoint, &options())?;
    let k = computation_interrupted(&w, device, "KILL")?;
    assert!(matches!(k, RpcErrorKind::Disconnected { .. }), "{k:?}");
    // The device's connection is broken: at once, an error again.
    let k = kind(device.rpc_memory());
    assert!(matches!(k, RpcErrorKind::Broken { .. }), "{k:?}");
    // Connecting again finds nothing there (or, while the kernel tears the
    // dead worker's socket down, a connection reset).
    let k = kind(Device::rpc_with(&w.endpoint, &options()));
    assert!(
        matches!(
            k,
            RpcErrorKind::Unreachable { .. } | RpcErrorKind::Disconnected { .. }
        ),
        "{k:?}"
    );
    local_still_works()
}

#[test]
fn a_worker_that_stops_answering_is_an_error_within_the_bound() -> Result<()> {
    let w = spawn(1)?;
    let device = Device::rpc_with(&w.endpoint, &options())?;
    let k = computation_interrupted(&w, device, "STOP")?;
    assert!(matches!(k, RpcErrorKind::NoAnswer { .. }), "{k:?}");
    local_still_works()
}

#[test]
fn a_worker_killed_during_an_upload_is_an_error() -> Result<()> {
    let w = spawn(1)?;
    let device = Device::rpc_with(&w.endpoint, &options())?;
    let ctx = Context::new_no_alloc(1 << 20)?;
    let t = ctx.new_tensor(Type::F32, &[4096, 4096])?; // 64 MiB
    ctx.allocate(Backend::new(device)?.buffer_type())?;
    let mut data = ctx.data()?;
    let big = ggml::ndarray::Array2::<f32>::ones((4096, 4096));
    // Stopped, the worker reads nothing: the upload fills the socket's
    // buffers and waits; then it is killed.
    w.signal("STOP");
    let killer = later(&w, Duration::from_millis(500), "KILL");
    let result = within(options().timeout, || data.copy_from_array(t, &big));
    killer.join().expect("killer");
    let k = kind(result);
    assert!(matches!(k, RpcErrorKind::Disconnected { .. }), "{k:?}");
    // The download of the same tensor fails at once; the caller's array is
    // as it was.
    let k = kind(data.to_array_as::<f32, Ix2>(t));
    assert!(matches!(k, RpcErrorKind::Broken { .. }), "{k:?}");
    assert!(big.iter().all(|&v| v == 1.0));
    local_still_works()
}
