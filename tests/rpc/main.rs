//! ggml's RPC backend through the safe API, on loopback: workers are this
//! test binary started again as child processes serving ggml's own server
//! ([`ggml::backend::rpc::Worker`]), each on a free port, killed when the
//! test ends (also when it fails or panics) and exiting on their own when
//! this process dies (their stdin closes). Results are compared with
//! ndarray and with the same computation on the local CPU; faults are
//! provoked with `SIGKILL`/`SIGSTOP` and with fake listeners.

#[path = "../common/mod.rs"]
mod common;

mod faults;
mod graphs;
mod hostile;
mod interop;
mod llama;
mod workers;

/// The entry of a worker child: serves when started by [`workers::spawn`]
/// (which sets `GGML_TEST_RPC_WORKER`), and does nothing in a normal run.
#[test]
#[ignore = "the worker child's entry point, run by the fixture"]
fn worker_entry() {
    workers::child_main();
}
