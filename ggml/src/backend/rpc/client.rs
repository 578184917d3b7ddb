//! The client as a ggml backend: devices, a buffer type, buffers and
//! backends whose function tables (ggml's internal `ggml-backend-impl.h`)
//! are implemented here over [`Conn`], so that ggml's scheduler, graph
//! allocator and llama.cpp use a worker's devices like any other.
//!
//! Each function ggml calls catches panics, bounds its waits through the
//! connection, and on failure records the fault ([`record`]) and returns
//! what ggml takes as "nothing happened" (a NULL buffer, a failed status,
//! an untouched destination). The safe call that reached it turns the
//! record into the error. Nothing here aborts.
//!
//! Devices, their buffer type and the registry live as long as the process
//! (as ggml's own devices do); one device per endpoint and worker device,
//! reconnected in place when its connection broke. Buffers and backends
//! hold the connection they were made on.

use std::collections::{HashMap, HashSet};
use std::ffi::{c_char, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use ggml_sys as sys;
use sys::backend_impl as imp;

use super::conn::{Bounds, Cmd, Conn};
use super::wire;
use crate::error::rpc::{record, RpcError, RpcErrorKind};

/// Above this size, an upload into a weights buffer first asks whether the
/// worker's cache (`--cache`) holds the data (`HASH_THRESHOLD`).
const HASH_THRESHOLD: usize = 10 * 1024 * 1024;

// What a worker may answer. ggml asserts on numbers its allocator cannot
// work with (a NULL base, a buffer smaller than asked, a tensor that grows
// between planning and placing); a worker is another machine, so its
// answers are checked like any input, and a wrong one breaks the
// connection with an error.

/// Largest alignment taken (ggml's backends ask for 32 to 4096 bytes).
const MAX_ALIGNMENT: usize = 1 << 20;
/// Largest size a tensor may take on a worker (1 TiB): far past any
/// device, far below where ggml's size arithmetic overflows.
const MAX_ALLOC_SIZE: u64 = 1 << 40;

/// One device of one worker.
pub(crate) struct RpcDevice {
    pub endpoint: String,
    pub index: u32,
    name: CString,
    description: CString,
    conn: Mutex<Option<Arc<Conn>>>,
    /// Alignment and largest buffer of the worker's buffer type, asked once
    /// per connection.
    limits: Mutex<(usize, usize)>,
    buft: imp::ggml_backend_buffer_type,
    dev: imp::ggml_backend_device,
}

// SAFETY: the raw pointers in the device point at the device itself and at
// the registry, both leaked and never written after creation; what changes
// (the connection, the limits) is behind mutexes.
unsafe impl Send for RpcDevice {}
// SAFETY: as above.
unsafe impl Sync for RpcDevice {}

/// A buffer on a worker.
struct RpcBuffer {
    conn: Arc<Conn>,
    remote: u64,
    base: u64,
}

/// A backend (a stream) on a worker's device.
struct RpcBackend {
    conn: Arc<Conn>,
    device: u32,
    name: CString,
    backend: imp::ggml_backend,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every device made, for the registry's enumeration, by endpoint.
fn devices() -> &'static Mutex<Vec<&'static RpcDevice>> {
    static DEVICES: OnceLock<Mutex<Vec<&'static RpcDevice>>> = OnceLock::new();
    DEVICES.get_or_init(|| Mutex::new(Vec::new()))
}

/// The endpoints connected so far and their devices.
fn endpoints() -> &'static Mutex<HashMap<String, Vec<&'static RpcDevice>>> {
    static ENDPOINTS: OnceLock<Mutex<HashMap<String, Vec<&'static RpcDevice>>>> = OnceLock::new();
    ENDPOINTS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The registry every device of this client belongs to.
fn registry() -> *mut imp::ggml_backend_reg {
    struct Reg(*mut imp::ggml_backend_reg);
    // SAFETY: written once, then only read by ggml through its pointer.
    unsafe impl Send for Reg {}
    // SAFETY: as above.
    unsafe impl Sync for Reg {}
    static REG: OnceLock<Reg> = OnceLock::new();
    REG.get_or_init(|| {
        Reg(Box::into_raw(Box::new(imp::ggml_backend_reg {
            api_version: imp::GGML_BACKEND_API_VERSION as i32,
            iface: imp::ggml_backend_reg_i {
                get_name: Some(reg_get_name),
                get_device_count: Some(reg_get_device_count),
                get_device: Some(reg_get_device),
                get_proc_address: Some(reg_get_proc_address),
            },
            context: ptr::null_mut(),
        })))
    })
    .0
}

/// The devices of the worker at `endpoint`, connected (or reconnected, when
/// the earlier connection broke) within `bounds`.
pub(crate) fn connect(endpoint: &str, bounds: Bounds) -> Result<Vec<&'static RpcDevice>, RpcError> {
    let mut map = lock(endpoints());
    if let Some(devs) = map.get(endpoint) {
        let healthy = devs
            .iter()
            .all(|d| lock(&d.conn).as_ref().is_some_and(|c| !c.is_broken()));
        if healthy {
            return Ok(devs.clone());
        }
    }
    let conn = Arc::new(Conn::open(endpoint, bounds)?);
    let mut limits = Vec::new();
    for device in 0..conn.devices {
        let mut align = [0u8; 8];
        let mut max = [0u8; 8];
        let ask = |cmd, out: &mut [u8], during| {
            conn.request(cmd, &[&device.to_ne_bytes()], Some(out), conn.io_bound())
                .map_err(|k| conn.error(during, k))
        };
        ask(Cmd::GetAlignment, &mut align, "alignment")?;
        ask(Cmd::GetMaxSize, &mut max, "max size")?;
        let align = u64::from_ne_bytes(align) as usize;
        if !align.is_power_of_two() || align > MAX_ALIGNMENT {
            return Err(conn.error(
                "alignment",
                RpcErrorKind::Protocol {
                    reason: format!(
                        "alignment {align} is not a power of two up to {MAX_ALIGNMENT}"
                    ),
                },
            ));
        }
        limits.push((align, (u64::from_ne_bytes(max) as usize).max(1)));
    }
    let devs = map.entry(endpoint.to_owned()).or_default();
    for index in 0..conn.devices {
        let dev = match devs.get(index as usize) {
            Some(&dev) => dev,
            None => {
                let dev = new_device(endpoint, index);
                devs.push(dev);
                lock(devices()).push(dev);
                dev
            }
        };
        *lock(&dev.conn) = Some(conn.clone());
        *lock(&dev.limits) = limits[index as usize];
    }
    // A worker now serving fewer devices: the rest have no connection.
    for dev in devs.iter().skip(conn.devices as usize) {
        *lock(&dev.conn) = None;
    }
    Ok(devs[..conn.devices as usize].to_vec())
}

fn new_device(endpoint: &str, index: u32) -> &'static RpcDevice {
    let text = |s: String| CString::new(s.replace('\0', "?")).unwrap_or_default();
    let dev: &'static mut RpcDevice = Box::leak(Box::new(RpcDevice {
        endpoint: endpoint.to_owned(),
        index,
        name: text(format!("RPC{index}[{endpoint}]")),
        description: text(format!("ggml RPC worker at {endpoint}, device {index}")),
        conn: Mutex::new(None),
        limits: Mutex::new((1, 1)),
        buft: imp::ggml_backend_buffer_type {
            iface: imp::ggml_backend_buffer_type_i {
                get_name: Some(buft_get_name),
                alloc_buffer: Some(buft_alloc_buffer),
                alloc_buffer_n: None,
                get_alignment: Some(buft_get_alignment),
                get_max_size: Some(buft_get_max_size),
                get_alloc_size: Some(buft_get_alloc_size),
                get_alloc_size_n: None,
                is_host: None,
            },
            device: ptr::null_mut(),
            context: ptr::null_mut(),
        },
        dev: imp::ggml_backend_device {
            iface: imp::ggml_backend_device_i {
                get_name: Some(dev_get_name),
                get_description: Some(dev_get_description),
                get_memory: Some(dev_get_memory),
                get_type: Some(dev_get_type),
                get_props: Some(dev_get_props),
                init_backend: Some(dev_init_backend),
                get_buffer_type: Some(dev_get_buffer_type),
                get_host_buffer_type: None,
                buffer_from_host_ptr: None,
                supports_op: Some(dev_supports_op),
                supports_buft: Some(dev_supports_buft),
                offload_op: None,
                event_new: None,
                event_free: None,
                event_synchronize: None,
            },
            reg: registry().cast(),
            context: ptr::null_mut(),
        },
    }));
    let this: *mut RpcDevice = dev;
    dev.buft.context = this.cast();
    dev.buft.device = ptr::addr_of_mut!(dev.dev).cast();
    dev.dev.context = this.cast();
    dev
}

impl RpcDevice {
    /// The device as ggml's handle.
    pub(crate) fn as_ptr(&'static self) -> sys::ggml_backend_dev_t {
        ptr::addr_of!(self.dev).cast_mut().cast()
    }

    /// The current connection, if any.
    pub(crate) fn conn(&self) -> Option<Arc<Conn>> {
        lock(&self.conn).clone()
    }

    fn buft_ptr(&'static self) -> sys::ggml_backend_buffer_type_t {
        ptr::addr_of!(self.buft).cast_mut().cast()
    }

    /// A fault of this device's current connection (or of having none).
    fn no_conn(&self, during: &str) -> RpcError {
        RpcError {
            endpoint: self.endpoint.clone(),
            during: during.to_owned(),
            kind: RpcErrorKind::Broken {
                first: "the worker no longer serves this device".into(),
            },
        }
    }
}

/// Whether `dev` is one of this client's devices, and which.
pub(crate) fn device_of(dev: sys::ggml_backend_dev_t) -> Option<&'static RpcDevice> {
    lock(devices())
        .iter()
        .copied()
        .find(|d| ptr::eq(d.as_ptr(), dev))
}

/// Runs a callback's body, turning a panic into a recorded fault and
/// `fallback` (no panic crosses into C).
fn ffi<R>(fallback: R, f: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        record(RpcError {
            endpoint: String::new(),
            during: "a callback from ggml".into(),
            kind: RpcErrorKind::Protocol {
                reason: "the client panicked (a bug in this crate)".into(),
            },
        });
        fallback
    })
}

/// `$name(handle)`: the context (`$ctx`) of one of this client's objects,
/// reached through ggml's complete struct (`$full`) behind the opaque handle.
macro_rules! context_of {
    ($name:ident, $handle:ty, $full:ty, $ctx:ty, $what:literal) => {
        #[doc = concat!("The context behind one of this client's ", $what, ".")]
        ///
        /// # Safety
        #[doc = concat!("`handle` is one of this client's ", $what, ", live.")]
        unsafe fn $name<'a>(handle: $handle) -> &'a $ctx {
            // SAFETY: the caller's contract: its context is ours, of this type.
            unsafe { &*(*handle.cast::<$full>()).context.cast::<$ctx>() }
        }
    };
}

context_of!(
    dev_ctx,
    sys::ggml_backend_dev_t,
    imp::ggml_backend_device,
    RpcDevice,
    "devices"
);
context_of!(
    buft_ctx,
    sys::ggml_backend_buffer_type_t,
    imp::ggml_backend_buffer_type,
    RpcDevice,
    "buffer types"
);
context_of!(
    buf_ctx,
    sys::ggml_backend_buffer_t,
    imp::ggml_backend_buffer,
    RpcBuffer,
    "buffers"
);
context_of!(
    backend_ctx,
    sys::ggml_backend_t,
    imp::ggml_backend,
    RpcBackend,
    "backends"
);

/// The buffers this client made and has not freed (by address): how a
/// tensor's buffer is known to be ours before its context is read.
fn live_buffers() -> &'static Mutex<HashSet<usize>> {
    static LIVE: OnceLock<Mutex<HashSet<usize>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Whether `buffer` is one of this client's live buffers.
fn is_ours(buffer: sys::ggml_backend_buffer_t) -> bool {
    !buffer.is_null() && lock(live_buffers()).contains(&(buffer as usize))
}

/// Where `t` lives on `conn`'s worker: (buffer handle, address).
///
/// # Safety
/// `t` is a live tensor.
unsafe fn placement(conn: &Arc<Conn>, t: *const sys::ggml_tensor) -> Option<(u64, u64)> {
    // SAFETY: the caller's contract.
    let tr = unsafe { &*t };
    if !is_ours(tr.buffer) {
        return None;
    }
    // SAFETY: checked to be ours.
    let b = unsafe { buf_ctx(tr.buffer) };
    (Arc::ptr_eq(&b.conn, conn) && !tr.data.is_null()).then_some((b.remote, tr.data as u64))
}

/// A tensor serialised for `conn`.
///
/// # Safety
/// `t` is NULL or a live tensor.
unsafe fn tensor_bytes(conn: &Arc<Conn>, t: *const sys::ggml_tensor) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire::TENSOR_SIZE);
    // SAFETY: the caller's contract; `placement` reads tensors ggml gave.
    unsafe { wire::put_tensor(&mut out, t, &|t| placement(conn, t), 0) };
    out
}

// ----- registry -----

unsafe extern "C" fn reg_get_name(_reg: sys::ggml_backend_reg_t) -> *const c_char {
    c"RPC".as_ptr()
}

unsafe extern "C" fn reg_get_device_count(_reg: sys::ggml_backend_reg_t) -> usize {
    ffi(0, || lock(devices()).len())
}

unsafe extern "C" fn reg_get_device(
    _reg: sys::ggml_backend_reg_t,
    index: usize,
) -> sys::ggml_backend_dev_t {
    ffi(ptr::null_mut(), || {
        lock(devices())
            .get(index)
            .map_or(ptr::null_mut(), |d| d.as_ptr())
    })
}

unsafe extern "C" fn reg_get_proc_address(
    _reg: sys::ggml_backend_reg_t,
    _name: *const c_char,
) -> *mut c_void {
    ptr::null_mut()
}

// ----- device -----

unsafe extern "C" fn dev_get_name(dev: sys::ggml_backend_dev_t) -> *const c_char {
    // SAFETY: ggml calls this with one of our devices.
    unsafe { dev_ctx(dev) }.name.as_ptr()
}

unsafe extern "C" fn dev_get_description(dev: sys::ggml_backend_dev_t) -> *const c_char {
    // SAFETY: as above.
    unsafe { dev_ctx(dev) }.description.as_ptr()
}

/// The device's memory as the worker reports it; `None` after recording a
/// fault.
pub(crate) fn memory(d: &RpcDevice) -> Option<(usize, usize)> {
    let Some(conn) = d.conn() else {
        record(d.no_conn("device memory"));
        return None;
    };
    let mut out = [0u8; 16];
    match conn.request(
        Cmd::GetDeviceMemory,
        &[&d.index.to_ne_bytes()],
        Some(&mut out),
        conn.io_bound(),
    ) {
        Ok(()) => {
            let free = u64::from_ne_bytes(out[..8].try_into().unwrap_or_default());
            let total = u64::from_ne_bytes(out[8..].try_into().unwrap_or_default());
            Some((free as usize, total as usize))
        }
        Err(kind) => {
            record(conn.error("device memory", kind));
            None
        }
    }
}

unsafe extern "C" fn dev_get_memory(
    dev: sys::ggml_backend_dev_t,
    free: *mut usize,
    total: *mut usize,
) {
    ffi((), || {
        // SAFETY: ggml calls this with one of our devices.
        let (f, t) = memory(unsafe { dev_ctx(dev) }).unwrap_or((0, 0));
        // SAFETY: ggml passes two writable sizes.
        unsafe {
            *free = f;
            *total = t;
        }
    });
}

unsafe extern "C" fn dev_get_type(_dev: sys::ggml_backend_dev_t) -> sys::ggml_backend_dev_type {
    // As ggml's client: a worker's device takes offloaded layers.
    sys::GGML_BACKEND_DEVICE_TYPE_GPU
}

unsafe extern "C" fn dev_get_props(
    dev: sys::ggml_backend_dev_t,
    props: *mut sys::ggml_backend_dev_props,
) {
    ffi((), || {
        // SAFETY: ggml calls this with one of our devices.
        let d = unsafe { dev_ctx(dev) };
        let (free, total) = memory(d).unwrap_or((0, 0));
        // SAFETY: ggml passes writable properties.
        let props = unsafe { &mut *props };
        props.name = d.name.as_ptr();
        props.description = d.description.as_ptr();
        props.memory_free = free;
        props.memory_total = total;
        props.type_ = sys::GGML_BACKEND_DEVICE_TYPE_GPU;
        props.device_id = ptr::null();
        // Every call completes before it returns; no events, no host
        // buffers, nothing mapped from host memory.
        props.caps = sys::ggml_backend_dev_caps {
            async_: false,
            host_buffer: false,
            buffer_from_host_ptr: false,
            events: false,
            // As ggml's client: a model file mapped in host memory can be
            // uploaded from there.
            mmap_support: true,
        };
    });
}

unsafe extern "C" fn dev_init_backend(
    dev: sys::ggml_backend_dev_t,
    _params: *const c_char,
) -> sys::ggml_backend_t {
    ffi(ptr::null_mut(), || {
        // SAFETY: ggml calls this with one of our devices.
        let d = unsafe { dev_ctx(dev) };
        let Some(conn) = d.conn() else {
            record(d.no_conn("start a backend"));
            return ptr::null_mut();
        };
        let b = Box::into_raw(Box::new(RpcBackend {
            conn,
            device: d.index,
            name: d.name.clone(),
            backend: imp::ggml_backend {
                guid: guid(),
                iface: imp::ggml_backend_i {
                    get_name: Some(backend_get_name),
                    free: Some(backend_free),
                    set_tensor_async: None,
                    get_tensor_async: None,
                    set_tensor_2d_async: None,
                    get_tensor_2d_async: None,
                    cpy_tensor_async: None,
                    synchronize: None,
                    graph_plan_create: None,
                    graph_plan_free: None,
                    graph_plan_update: None,
                    graph_plan_compute: None,
                    graph_compute: Some(backend_graph_compute),
                    event_record: None,
                    event_wait: None,
                    graph_optimize: None,
                },
                device: dev,
                context: ptr::null_mut(),
            },
        }));
        // SAFETY: just allocated; the backend's context points at its box.
        unsafe {
            (*b).backend.context = b.cast();
            ptr::addr_of_mut!((*b).backend).cast()
        }
    })
}

/// This client's backend identifier.
fn guid() -> sys::ggml_guid_t {
    static GUID: [u8; 16] = *b"ggml-2 rpc clnt\0";
    GUID.as_ptr().cast_mut().cast()
}

unsafe extern "C" fn dev_get_buffer_type(
    dev: sys::ggml_backend_dev_t,
) -> sys::ggml_backend_buffer_type_t {
    // SAFETY: ggml calls this with one of our devices, which live forever.
    let d: &'static RpcDevice = unsafe { dev_ctx(dev) };
    d.buft_ptr()
}

/// Whether a worker can compute `op` for us (ggml's client says yes to
/// everything; the protocol cannot carry custom ops or sizes over 32 bits).
///
/// # Safety
/// `op` is a live tensor with live sources.
pub(crate) unsafe fn refusal(op: *const sys::ggml_tensor) -> Option<String> {
    // SAFETY: the caller's contract.
    let t = unsafe { &*op };
    wire::unsendable(t).or_else(|| {
        t.src
            .iter()
            .filter(|s| !s.is_null())
            // SAFETY: sources of a live tensor.
            .find_map(|&s| wire::unsendable(unsafe { &*s }))
    })
}

unsafe extern "C" fn dev_supports_op(
    _dev: sys::ggml_backend_dev_t,
    op: *const sys::ggml_tensor,
) -> bool {
    // SAFETY: ggml passes a live node.
    ffi(false, || unsafe { refusal(op) }.is_none())
}

unsafe extern "C" fn dev_supports_buft(
    dev: sys::ggml_backend_dev_t,
    buft: sys::ggml_backend_buffer_type_t,
) -> bool {
    // SAFETY: ggml calls this with one of our devices, which live forever.
    let d: &'static RpcDevice = unsafe { dev_ctx(dev) };
    ptr::eq(buft, d.buft_ptr())
}

// ----- buffer type -----

unsafe extern "C" fn buft_get_name(buft: sys::ggml_backend_buffer_type_t) -> *const c_char {
    // SAFETY: ggml calls this with one of our buffer types.
    unsafe { buft_ctx(buft) }.name.as_ptr()
}

unsafe extern "C" fn buft_get_alignment(buft: sys::ggml_backend_buffer_type_t) -> usize {
    // SAFETY: as above.
    lock(&unsafe { buft_ctx(buft) }.limits).0
}

unsafe extern "C" fn buft_get_max_size(buft: sys::ggml_backend_buffer_type_t) -> usize {
    // SAFETY: as above.
    lock(&unsafe { buft_ctx(buft) }.limits).1
}

unsafe extern "C" fn buft_alloc_buffer(
    buft: sys::ggml_backend_buffer_type_t,
    size: usize,
) -> sys::ggml_backend_buffer_t {
    ffi(ptr::null_mut(), || {
        // SAFETY: ggml calls this with one of our buffer types.
        let d = unsafe { buft_ctx(buft) };
        let Some(conn) = d.conn() else {
            record(d.no_conn("allocate"));
            return ptr::null_mut();
        };
        let mut req = Vec::with_capacity(12);
        req.extend_from_slice(&d.index.to_ne_bytes());
        req.extend_from_slice(&(size as u64).to_ne_bytes());
        let mut rsp = [0u8; 16];
        if let Err(kind) = conn.request(Cmd::AllocBuffer, &[&req], Some(&mut rsp), conn.io_bound())
        {
            record(conn.error("allocate", kind));
            return ptr::null_mut();
        }
        let remote = u64::from_ne_bytes(rsp[..8].try_into().unwrap_or_default());
        let remote_size = u64::from_ne_bytes(rsp[8..].try_into().unwrap_or_default());
        if remote == 0 {
            record(conn.error("allocate", RpcErrorKind::OutOfMemory { size }));
            return ptr::null_mut();
        }
        let mut base = [0u8; 8];
        if let Err(kind) = conn.request(
            Cmd::BufferGetBase,
            &[&remote.to_ne_bytes()],
            Some(&mut base),
            conn.io_bound(),
        ) {
            record(conn.error("buffer base", kind));
            return ptr::null_mut();
        }
        let base = u64::from_ne_bytes(base);
        let align = lock(&d.limits).0 as u64;
        let sane = remote_size >= size as u64
            && base != 0
            && base % align == 0
            && base
                .checked_add(remote_size)
                .is_some_and(|end| end <= isize::MAX as u64);
        if !sane {
            let reason = format!(
                "a buffer of {remote_size} bytes at {base:#x} for {size} bytes aligned to {align}"
            );
            // The worker's buffer is ours to free; the connection breaks.
            let _ = conn.request(
                Cmd::FreeBuffer,
                &[&remote.to_ne_bytes()],
                None,
                conn.io_bound(),
            );
            conn.poison(&reason);
            record(conn.error("allocate", RpcErrorKind::Protocol { reason }));
            return ptr::null_mut();
        }
        let ctx = Box::into_raw(Box::new(RpcBuffer { conn, remote, base }));
        let iface = imp::ggml_backend_buffer_i {
            free_buffer: Some(buffer_free),
            get_base: Some(buffer_get_base),
            init_tensor: Some(buffer_init_tensor),
            memset_tensor: Some(buffer_memset_tensor),
            set_tensor: Some(buffer_set_tensor),
            get_tensor: Some(buffer_get_tensor),
            set_tensor_2d: None,
            get_tensor_2d: None,
            cpy_tensor: Some(buffer_cpy_tensor),
            clear: Some(buffer_clear),
            reset: None,
        };
        // SAFETY: our buffer type, a table of our functions, a context they
        // own (freed by `buffer_free`).
        let buffer =
            unsafe { imp::ggml_backend_buffer_init(buft, iface, ctx.cast(), remote_size as usize) };
        if buffer.is_null() {
            // SAFETY: not handed to ggml.
            drop(unsafe { Box::from_raw(ctx) });
        } else {
            lock(live_buffers()).insert(buffer as usize);
        }
        buffer
    })
}

/// Whether ggml's client asks the worker for a tensor's size: quantized
/// rows the CUDA backend pads, ops whose memory may grow.
fn asks_alloc_size(t: &sys::ggml_tensor) -> bool {
    // SAFETY: pure functions of a type and an op.
    let quantized = unsafe { sys::ggml_is_quantized(t.type_) };
    // SAFETY: as above.
    let may_expand = unsafe { imp::ggml_op_alloc_size_may_expand(t.op) };
    (quantized && t.ne[0] % 512 != 0 && t.view_src.is_null()) || may_expand
}

/// What a tensor's allocation size depends on: device, type, op and its
/// parameters, shape and strides.
fn alloc_size_key(device: u32, t: &sys::ggml_tensor) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + 4 + 4 + 64 + 32 + 32);
    key.extend_from_slice(&device.to_ne_bytes());
    key.extend_from_slice(&t.type_.to_ne_bytes());
    key.extend_from_slice(&t.op.to_ne_bytes());
    for p in t.op_params {
        key.extend_from_slice(&p.to_ne_bytes());
    }
    for (ne, nb) in t.ne.iter().zip(t.nb) {
        key.extend_from_slice(&ne.to_ne_bytes());
        key.extend_from_slice(&(nb as u64).to_ne_bytes());
    }
    key
}

unsafe extern "C" fn buft_get_alloc_size(
    buft: sys::ggml_backend_buffer_type_t,
    tensor: *const sys::ggml_tensor,
) -> usize {
    // SAFETY: ggml passes a live tensor.
    let nbytes = unsafe { sys::ggml_nbytes(tensor) };
    ffi(nbytes, || {
        // SAFETY: as above.
        let t = unsafe { &*tensor };
        if !asks_alloc_size(t) || wire::unsendable(t).is_some() {
            return nbytes;
        }
        // SAFETY: ggml calls this with one of our buffer types.
        let d = unsafe { buft_ctx(buft) };
        let Some(conn) = d.conn() else {
            return nbytes;
        };
        // The answer is fixed for a tensor's shape (ggml's client caches it
        // too): asked once, so that planning and placing agree whatever the
        // worker answers.
        let key = alloc_size_key(d.index, t);
        if let Some(&known) = lock(&conn.alloc_sizes).get(&key) {
            return known;
        }
        let mut req = Vec::with_capacity(4 + 11 * wire::TENSOR_SIZE);
        req.extend_from_slice(&d.index.to_ne_bytes());
        // SAFETY: a live tensor and its sources.
        unsafe {
            wire::put_tensor(&mut req, tensor, &|t| placement(&conn, t), 0);
            for &s in &t.src {
                wire::put_tensor(&mut req, s, &|t| placement(&conn, t), 0);
            }
        }
        let mut rsp = [0u8; 8];
        let size = match conn.request(Cmd::GetAllocSize, &[&req], Some(&mut rsp), conn.io_bound()) {
            Ok(()) if u64::from_ne_bytes(rsp) <= MAX_ALLOC_SIZE => {
                (u64::from_ne_bytes(rsp) as usize).max(nbytes)
            }
            Ok(()) => {
                let reason = format!(
                    "{} bytes for tensor {:?}",
                    u64::from_ne_bytes(rsp),
                    wire::name(t)
                );
                conn.poison(&reason);
                record(conn.error("allocation size", RpcErrorKind::Protocol { reason }));
                nbytes
            }
            Err(kind) => {
                record(conn.error("allocation size", kind));
                nbytes
            }
        };
        lock(&conn.alloc_sizes).insert(key, size);
        size
    })
}

// ----- buffer -----

unsafe extern "C" fn buffer_free(buffer: sys::ggml_backend_buffer_t) {
    ffi((), || {
        lock(live_buffers()).remove(&(buffer as usize));
        // SAFETY: ggml frees each of our buffers once; the context is ours.
        let ctx = unsafe {
            Box::from_raw(
                (*buffer.cast::<imp::ggml_backend_buffer>())
                    .context
                    .cast::<RpcBuffer>(),
            )
        };
        // The worker drops its stored graphs with any buffer.
        ctx.conn.forget_graphs();
        // A broken connection has no buffer left to free: ignore its failure.
        let _ = ctx.conn.request(
            Cmd::FreeBuffer,
            &[&ctx.remote.to_ne_bytes()],
            None,
            ctx.conn.io_bound(),
        );
    });
}

unsafe extern "C" fn buffer_get_base(buffer: sys::ggml_backend_buffer_t) -> *mut c_void {
    // SAFETY: ggml calls this with one of our buffers. The address is the
    // worker's: this buffer is not host memory, so nothing dereferences it
    // here (ggml uses it as an offset base).
    unsafe { buf_ctx(buffer) }.base as *mut c_void
}

unsafe extern "C" fn buffer_init_tensor(
    buffer: sys::ggml_backend_buffer_t,
    tensor: *mut sys::ggml_tensor,
) -> sys::ggml_status {
    ffi(sys::GGML_STATUS_SUCCESS, || {
        // SAFETY: ggml calls this with one of our buffers and a live tensor.
        let (b, t) = unsafe { (buf_ctx(buffer), &*tensor) };
        // SAFETY: pure.
        let quantized = unsafe { sys::ggml_is_quantized(t.type_) };
        if quantized && t.ne[0] % 512 != 0 && t.view_src.is_null() && wire::unsendable(t).is_none()
        {
            // SAFETY: a live tensor.
            let req = unsafe { tensor_bytes(&b.conn, tensor) };
            if let Err(kind) = b
                .conn
                .request(Cmd::InitTensor, &[&req], None, b.conn.io_bound())
            {
                record(b.conn.error("init tensor", kind));
            }
        }
        // Failures are recorded, not returned: ggml's allocator asserts on
        // a failed status.
        sys::GGML_STATUS_SUCCESS
    })
}

unsafe extern "C" fn buffer_memset_tensor(
    buffer: sys::ggml_backend_buffer_t,
    tensor: *mut sys::ggml_tensor,
    value: u8,
    offset: usize,
    size: usize,
) {
    ffi((), || {
        // SAFETY: ggml calls this with one of our buffers and a live tensor.
        let b = unsafe { buf_ctx(buffer) };
        // SAFETY: as above.
        let mut req = unsafe { tensor_bytes(&b.conn, tensor) };
        req.extend_from_slice(&(offset as u64).to_ne_bytes());
        req.extend_from_slice(&(size as u64).to_ne_bytes());
        req.push(value);
        if let Err(kind) = b
            .conn
            .request(Cmd::MemsetTensor, &[&req], None, b.conn.io_bound())
        {
            record(b.conn.error("memset", kind));
        }
    });
}

unsafe extern "C" fn buffer_set_tensor(
    buffer: sys::ggml_backend_buffer_t,
    tensor: *mut sys::ggml_tensor,
    data: *const c_void,
    offset: usize,
    size: usize,
) {
    ffi((), || {
        // SAFETY: ggml calls this with one of our buffers, a live tensor and
        // `size` readable bytes at `data`.
        let (b, bytes) = unsafe {
            (
                buf_ctx(buffer),
                std::slice::from_raw_parts(data.cast::<u8>(), size),
            )
        };
        // SAFETY: as above.
        let t = unsafe { tensor_bytes(&b.conn, tensor) };
        let mut cache_flag = 0u8;
        // SAFETY: one of our buffers, live.
        let usage = unsafe { (*buffer.cast::<imp::ggml_backend_buffer>()).usage };
        if size > HASH_THRESHOLD && usage == sys::GGML_BACKEND_BUFFER_USAGE_WEIGHTS {
            let mut req = t.clone();
            req.extend_from_slice(&(offset as u64).to_ne_bytes());
            req.extend_from_slice(&wire::fnv1a(bytes).to_ne_bytes());
            let mut found = [0u8; 1];
            match b.conn.request(
                Cmd::SetTensorHash,
                &[&req],
                Some(&mut found),
                b.conn.io_bound(),
            ) {
                Ok(()) if found[0] != 0 => return,
                Ok(()) => cache_flag = 1,
                Err(kind) => {
                    record(b.conn.error("upload", kind));
                    return;
                }
            }
        }
        let head = [&t[..], &[cache_flag], &(offset as u64).to_ne_bytes()[..]].concat();
        if let Err(kind) = b
            .conn
            .request(Cmd::SetTensor, &[&head, bytes], None, b.conn.io_bound())
        {
            record(b.conn.error("upload", kind));
        }
    });
}

unsafe extern "C" fn buffer_get_tensor(
    buffer: sys::ggml_backend_buffer_t,
    tensor: *const sys::ggml_tensor,
    data: *mut c_void,
    offset: usize,
    size: usize,
) {
    ffi((), || {
        // SAFETY: ggml calls this with one of our buffers and a live tensor.
        let b = unsafe { buf_ctx(buffer) };
        // SAFETY: as above.
        let mut req = unsafe { tensor_bytes(&b.conn, tensor) };
        req.extend_from_slice(&(offset as u64).to_ne_bytes());
        req.extend_from_slice(&(size as u64).to_ne_bytes());
        // Into memory of our own first: a transfer that fails half way
        // leaves the caller's destination as it was.
        let mut staging = vec![0u8; size];
        match b.conn.request(
            Cmd::GetTensor,
            &[&req],
            Some(&mut staging),
            b.conn.io_bound(),
        ) {
            // SAFETY: ggml passes `size` writable bytes at `data`.
            Ok(()) => unsafe {
                ptr::copy_nonoverlapping(staging.as_ptr(), data.cast::<u8>(), size)
            },
            Err(kind) => record(b.conn.error("download", kind)),
        }
    });
}

unsafe extern "C" fn buffer_cpy_tensor(
    buffer: sys::ggml_backend_buffer_t,
    src: *const sys::ggml_tensor,
    dst: *mut sys::ggml_tensor,
) -> bool {
    ffi(false, || {
        // SAFETY: ggml calls this with one of our buffers and live tensors.
        let (b, src_buffer) = unsafe { (buf_ctx(buffer), (*src).buffer) };
        // SAFETY: checked to be ours before its context is read.
        if !is_ours(src_buffer) || !Arc::ptr_eq(&unsafe { buf_ctx(src_buffer) }.conn, &b.conn) {
            // Another worker or host memory: ggml copies through the host.
            return false;
        }
        // SAFETY: live tensors.
        let req = unsafe { [tensor_bytes(&b.conn, src), tensor_bytes(&b.conn, dst)].concat() };
        let mut ok = [0u8; 1];
        match b
            .conn
            .request(Cmd::CopyTensor, &[&req], Some(&mut ok), b.conn.io_bound())
        {
            Ok(()) => ok[0] != 0,
            Err(kind) => {
                record(b.conn.error("copy", kind));
                // Claims the copy: ggml's fallback would only fail again.
                true
            }
        }
    })
}

unsafe extern "C" fn buffer_clear(buffer: sys::ggml_backend_buffer_t, value: u8) {
    ffi((), || {
        // SAFETY: ggml calls this with one of our buffers.
        let b = unsafe { buf_ctx(buffer) };
        let req = [&b.remote.to_ne_bytes()[..], &[value]].concat();
        if let Err(kind) = b
            .conn
            .request(Cmd::BufferClear, &[&req], None, b.conn.io_bound())
        {
            record(b.conn.error("clear", kind));
        }
    });
}

// ----- backend -----

unsafe extern "C" fn backend_get_name(backend: sys::ggml_backend_t) -> *const c_char {
    // SAFETY: ggml calls this with one of our backends.
    unsafe { backend_ctx(backend) }.name.as_ptr()
}

unsafe extern "C" fn backend_free(backend: sys::ggml_backend_t) {
    ffi((), || {
        // SAFETY: ggml frees each of our backends once; its context is the
        // box the backend struct lives in.
        drop(unsafe {
            Box::from_raw(
                (*backend.cast::<imp::ggml_backend>())
                    .context
                    .cast::<RpcBackend>(),
            )
        });
    });
}

unsafe extern "C" fn backend_graph_compute(
    backend: sys::ggml_backend_t,
    cgraph: *mut sys::ggml_cgraph,
) -> sys::ggml_status {
    ffi(sys::GGML_STATUS_FAILED, || {
        // SAFETY: ggml calls this with one of our backends and a live graph.
        let b = unsafe { backend_ctx(backend) };
        // SAFETY: a live graph.
        let n = unsafe { sys::ggml_graph_n_nodes(cgraph) }.max(0);
        let nodes: Vec<*mut sys::ggml_tensor> = (0..n)
            // SAFETY: `i` below the node count.
            .map(|i| unsafe { sys::ggml_graph_node(cgraph, i) })
            .collect();
        if nodes.is_empty() {
            return sys::GGML_STATUS_SUCCESS;
        }
        // SAFETY: live nodes and sources.
        let msg = match unsafe { wire::graph(b.device, &nodes, &|t| placement(&b.conn, t)) } {
            Ok(msg) => msg,
            Err(what) => {
                record(
                    b.conn
                        .error("graph compute", RpcErrorKind::Unsupported { what }),
                );
                return sys::GGML_STATUS_FAILED;
            }
        };
        match compute(&b.conn, b.device, msg) {
            Ok(()) => sys::GGML_STATUS_SUCCESS,
            Err(kind) => {
                record(b.conn.error("graph compute", kind));
                sys::GGML_STATUS_FAILED
            }
        }
    })
}

/// Sends a graph (or asks for the last one again when it is the same) and
/// waits, within the bound, for the worker to finish it: the round trip of
/// a small request after it, which the worker answers once the computation
/// is done (ggml's protocol has no answer to a computation).
fn compute(conn: &Conn, device: u32, msg: Vec<u8>) -> Result<(), RpcErrorKind> {
    let mut last = conn.last_graph(device);
    if last.as_deref() == Some(&msg[..]) {
        conn.request(
            Cmd::GraphRecompute,
            &[&device.to_ne_bytes()],
            None,
            conn.io_bound(),
        )?;
        conn.traffic.recomputes.fetch_add(1, Ordering::Relaxed);
    } else {
        *last = None;
        conn.request(Cmd::GraphCompute, &[&msg], None, conn.io_bound())?;
        conn.traffic.graphs.fetch_add(1, Ordering::Relaxed);
        *last = Some(msg);
    }
    drop(last);
    let mut align = [0u8; 8];
    conn.request(
        Cmd::GetAlignment,
        &[&device.to_ne_bytes()],
        Some(&mut align),
        conn.io_bound(),
    )
}
