//! Worker child processes for the tests.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

const ENV: &str = "GGML_TEST_RPC_WORKER";

/// A worker child, killed and reaped when dropped.
pub struct WorkerProc {
    child: Child,
    pub endpoint: String,
}

impl WorkerProc {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`"KILL"`, `"STOP"`, `"CONT"`) to the child.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        // A stopped child must be continued to die of SIGKILL? No: SIGKILL
        // ends stopped processes too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts a worker serving the CPU with `threads` threads and waits until
/// it listens.
pub fn spawn(threads: usize) -> Result<WorkerProc> {
    for _ in 0..3 {
        let port = free_port();
        let child = Command::new(std::env::current_exe()?)
            .args([
                "--exact",
                "worker_entry",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV, format!("{port}:{threads}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut w = WorkerProc {
            child,
            endpoint: format!("127.0.0.1:{port}"),
        };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Some(status) = w.child.try_wait()? {
                // Lost the port to someone else: try another.
                eprintln!("worker on {port} exited early ({status}); retrying");
                break;
            }
            // A probe the worker accepts and drops (it then serves the next).
            if TcpStream::connect(&w.endpoint).is_ok() {
                return Ok(w);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = w.child.kill();
    }
    bail!("no worker started")
}

/// In a child: serve until the parent goes (stdin closes) or is killed.
pub fn child_main() {
    let Ok(spec) = std::env::var(ENV) else {
        return;
    };
    let (port, threads) = spec.split_once(':').expect("port:threads");
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });
    let worker = ggml::backend::rpc::Worker::new(port.parse().expect("port"))
        .threads(threads.parse().expect("threads"));
    let err = match worker.serve() {
        Ok(never) => match never {},
        Err(e) => e,
    };
    eprintln!("worker: {err}");
    std::process::exit(3);
}
