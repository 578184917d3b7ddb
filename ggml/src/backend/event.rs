//! [`Event`]: a synchronisation point between backends of a device that
//! has events (GPUs; the CPU has none).

use std::fmt;
use std::ptr::NonNull;

use super::raw::{self, RawEvent};
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
        Ok(Event {
            raw: device.raw().new_event().ok_or_else(unsupported)?,
            device,
        })
    }

    /// The raw layer's handle of the event.
    fn raw(&self) -> RawEvent<'_> {
        // SAFETY: live until `self` is dropped, which the borrow outlasts.
        unsafe { RawEvent::new(self.raw) }
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
        // SAFETY: a backend of the event's device (checked above), which has
        // events (checked at creation; ggml asserts the backend's hook exists).
        unsafe { self.raw().record(backend.raw()) };
        Ok(())
    }

    /// Makes `backend` wait for the event before its later work.
    ///
    /// # Errors
    /// [`Error::NotSupported`] for a backend of another device.
    pub fn wait_on(&self, backend: &mut Backend) -> Result<()> {
        self.check(backend)?;
        // SAFETY: as in `record`.
        unsafe { self.raw().wait(backend.raw()) };
        Ok(())
    }

    /// Blocks the host until the event has happened.
    pub fn synchronize(&self) {
        self.raw().synchronize();
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: a live event, freed once.
        unsafe { raw::free_event(self.raw) };
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("device", &self.device)
            .finish()
    }
}
