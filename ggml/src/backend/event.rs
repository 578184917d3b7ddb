//! [`Event`]: a synchronisation point between backends of a device that
//! has events (GPUs; the CPU has none).

use std::fmt;
use std::ptr::NonNull;

use super::{Backend, Device};
use crate::error::{Error, Result};

/// An event of a device: recorded on one of its backends' queues, waited
/// for by the host or by another backend of the same device.
pub struct Event {
    raw: NonNull<ggml_sys::ggml_backend_event>,
    device: Device,
}

// SAFETY: events have no thread affinity; using one takes `&mut self` or
// consumes nothing shared.
unsafe impl Send for Event {}

impl Event {
    /// A new event of `device`.
    ///
    /// # Errors
    /// [`Error::NotSupported`] for a device without events (the CPU).
    pub fn new(device: Device) -> Result<Event> {
        crate::init::ensure()?;
        let unsupported = || Error::NotSupported {
            backend: device.name(),
            what: "events",
        };
        if !device.caps().events {
            return Err(unsupported());
        }
        // SAFETY: a registry device that reports events.
        let raw = unsafe { ggml_sys::ggml_backend_event_new(device.as_ptr()) };
        Ok(Event {
            raw: NonNull::new(raw).ok_or_else(unsupported)?,
            device,
        })
    }

    /// Its device.
    pub fn device(&self) -> Device {
        self.device
    }

    fn check(&self, backend: &Backend) -> Result<()> {
        if backend.device() == self.device {
            Ok(())
        } else {
            Err(Error::NotSupported {
                backend: backend.name(),
                what: "events of another device",
            })
        }
    }

    /// Records the event on `backend`'s queue (after the work queued so far).
    ///
    /// # Errors
    /// [`Error::NotSupported`] for a backend of another device.
    pub fn record(&mut self, backend: &mut Backend) -> Result<()> {
        self.check(backend)?;
        // SAFETY: a live event of the backend's device, which has events
        // (checked at creation; ggml asserts the backend's hook exists).
        unsafe { ggml_sys::ggml_backend_event_record(self.raw.as_ptr(), backend.as_ptr()) };
        Ok(())
    }

    /// Makes `backend` wait for the event before its later work.
    ///
    /// # Errors
    /// [`Error::NotSupported`] for a backend of another device.
    pub fn wait_on(&self, backend: &mut Backend) -> Result<()> {
        self.check(backend)?;
        // SAFETY: as in `record`.
        unsafe { ggml_sys::ggml_backend_event_wait(backend.as_ptr(), self.raw.as_ptr()) };
        Ok(())
    }

    /// Blocks the host until the event has happened.
    pub fn synchronize(&self) {
        // SAFETY: a live event of a device with events.
        unsafe { ggml_sys::ggml_backend_event_synchronize(self.raw.as_ptr()) };
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: a live event, freed once.
        unsafe { ggml_sys::ggml_backend_event_free(self.raw.as_ptr()) };
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("device", &self.device)
            .finish()
    }
}
