//! Computing a graph on the CPU: directly through the linked CPU backend
//! (`ggml_graph_plan` + `ggml_graph_compute` with a work buffer of ours), or,
//! for `GGML_BACKEND_DL` installs, through the backend registry.

use crate::error::Result;

/// An abort callback as ggml takes it: function and opaque data.
pub(crate) type AbortHook = (
    unsafe extern "C" fn(*mut std::ffi::c_void) -> bool,
    *mut std::ffi::c_void,
);

/// Computes `graph` on `threads` threads.
#[cfg(ggml_cpu_backend)]
pub(crate) fn compute(
    graph: *mut ggml_sys::ggml_cgraph,
    threads: usize,
    abort: Option<AbortHook>,
) -> Result<ggml_sys::ggml_status> {
    let threads = crate::threads::clamp(threads);
    // SAFETY: a live graph; no threadpool (ggml makes a disposable one).
    let mut plan = unsafe { ggml_sys::ggml_graph_plan(graph, threads, std::ptr::null_mut()) };
    let mut work = vec![0u8; plan.work_size];
    plan.work_data = if work.is_empty() {
        std::ptr::null_mut()
    } else {
        work.as_mut_ptr()
    };
    if let Some((f, data)) = abort {
        plan.abort_callback = Some(f);
        plan.abort_callback_data = data;
    }
    // SAFETY: the plan's work buffer is as large as ggml asked and outlives the
    // call; the abort data outlives it too (the caller's stack frame).
    Ok(unsafe { ggml_sys::ggml_graph_compute(graph, &mut plan) })
}

/// Computes `graph` on `threads` threads through the run-time-loaded CPU backend.
#[cfg(not(ggml_cpu_backend))]
pub(crate) fn compute(
    graph: *mut ggml_sys::ggml_cgraph,
    threads: usize,
    abort: Option<AbortHook>,
) -> Result<ggml_sys::ggml_status> {
    use crate::error::Error;
    use std::ffi::CStr;

    type SetThreads = unsafe extern "C" fn(ggml_sys::ggml_backend_t, i32);
    type SetAbort = unsafe extern "C" fn(
        ggml_sys::ggml_backend_t,
        ggml_sys::ggml_abort_callback,
        *mut std::ffi::c_void,
    );

    crate::init::ensure()?;
    // SAFETY: registry calls with valid arguments; the backend is freed below.
    unsafe {
        let backend = ggml_sys::ggml_backend_init_by_type(
            ggml_sys::GGML_BACKEND_DEVICE_TYPE_CPU,
            std::ptr::null(),
        );
        if backend.is_null() {
            return Err(Error::Backend(
                "no CPU backend could be loaded (are the ggml backend modules installed?)".into(),
            ));
        }
        let device = ggml_sys::ggml_backend_get_device(backend);
        let reg = ggml_sys::ggml_backend_dev_backend_reg(device);
        let lookup = |name: &CStr| ggml_sys::ggml_backend_reg_get_proc_address(reg, name.as_ptr());
        let set_threads = lookup(c"ggml_backend_set_n_threads");
        if !set_threads.is_null() {
            let set_threads: SetThreads = std::mem::transmute(set_threads);
            set_threads(backend, crate::threads::clamp(threads));
        }
        if let Some((f, data)) = abort {
            let set_abort = lookup(c"ggml_backend_set_abort_callback");
            if set_abort.is_null() {
                ggml_sys::ggml_backend_free(backend);
                return Err(Error::Backend(
                    "the CPU backend has no abort callback".into(),
                ));
            }
            let set_abort: SetAbort = std::mem::transmute(set_abort);
            set_abort(backend, Some(f), data);
        }
        let status = ggml_sys::ggml_backend_graph_compute(backend, graph);
        ggml_sys::ggml_backend_free(backend);
        Ok(status)
    }
}
