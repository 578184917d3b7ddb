//! llama.cpp's and ggml's log lines, routed to the [`log`](::log) crate (targets
//! `llama` and `ggml` are one callback in llama.cpp: target `llama`), instead
//! of printed to stderr. Installed once, before the first llama call.
//!
//! The callback runs on whichever thread logs; a line may come in pieces
//! (`GGML_LOG_LEVEL_CONT` continues the previous one), so each thread keeps
//! its unfinished line.

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr};

use ggml_sys as sys;

thread_local! {
    /// This thread's unfinished line and its level.
    static PENDING: RefCell<(String, log::Level)> = const { RefCell::new((String::new(), log::Level::Info)) };
}

thread_local! {
    /// The last error line llama.cpp logged on this thread (to explain a NULL).
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The last error line llama.cpp logged on this thread, if any, cleared.
pub(crate) fn take_last_error() -> String {
    LAST_ERROR.with(|e| std::mem::take(&mut *e.borrow_mut()))
}

fn level(raw: sys::ggml_log_level, previous: log::Level) -> log::Level {
    match raw {
        sys::GGML_LOG_LEVEL_DEBUG => log::Level::Debug,
        sys::GGML_LOG_LEVEL_WARN => log::Level::Warn,
        sys::GGML_LOG_LEVEL_ERROR => log::Level::Error,
        sys::GGML_LOG_LEVEL_CONT => previous,
        _ => log::Level::Info,
    }
}

pub(crate) unsafe extern "C" fn callback(
    raw: sys::ggml_log_level,
    text: *const c_char,
    _: *mut c_void,
) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a NUL-terminated message, valid for the call.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    // No panic may cross into C: a failing logger loses the line.
    let _ = std::panic::catch_unwind(|| {
        PENDING.with(|p| {
            let mut p = p.borrow_mut();
            let lvl = level(raw, p.1);
            if raw != sys::GGML_LOG_LEVEL_CONT && !p.0.is_empty() {
                let line = std::mem::take(&mut p.0);
                emit(p.1, &line);
            }
            p.1 = lvl;
            p.0.push_str(&text);
            while let Some(i) = p.0.find('\n') {
                let line: String = p.0.drain(..=i).collect();
                emit(lvl, line.trim_end());
            }
        })
    });
}

fn emit(level: log::Level, line: &str) {
    if line.is_empty() {
        return;
    }
    if level == log::Level::Error {
        LAST_ERROR.with(|e| *e.borrow_mut() = line.to_string());
    }
    log::log!(target: "llama", level, "{line}");
}
