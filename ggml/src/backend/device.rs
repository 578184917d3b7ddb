//! [`Device`]: the devices ggml's backend registry knows (the CPU, GPUs,
//! accelerators), their properties, and picking one.

use std::ffi::CString;
use std::fmt;

use super::raw::{self, RawDevice};
use super::{Backend, BufferType};
use crate::error::{Error, Result};

/// What kind of device a [`Device`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeviceType {
    /// The CPU, with host memory.
    Cpu,
    /// A discrete GPU with its own memory.
    Gpu,
    /// A GPU sharing host memory (`IGPU`).
    IntegratedGpu,
    /// An accelerator that works with the CPU backend (BLAS, AMX, ...).
    Accelerator,
    /// A device that combines others (ggml's `META`).
    Meta,
}

impl DeviceType {
    fn from_raw(raw: ggml_sys::ggml_backend_dev_type) -> Option<Self> {
        Some(match raw {
            ggml_sys::GGML_BACKEND_DEVICE_TYPE_CPU => DeviceType::Cpu,
            ggml_sys::GGML_BACKEND_DEVICE_TYPE_GPU => DeviceType::Gpu,
            ggml_sys::GGML_BACKEND_DEVICE_TYPE_IGPU => DeviceType::IntegratedGpu,
            ggml_sys::GGML_BACKEND_DEVICE_TYPE_ACCEL => DeviceType::Accelerator,
            ggml_sys::GGML_BACKEND_DEVICE_TYPE_META => DeviceType::Meta,
            _ => return None,
        })
    }

    fn as_raw(self) -> ggml_sys::ggml_backend_dev_type {
        match self {
            DeviceType::Cpu => ggml_sys::GGML_BACKEND_DEVICE_TYPE_CPU,
            DeviceType::Gpu => ggml_sys::GGML_BACKEND_DEVICE_TYPE_GPU,
            DeviceType::IntegratedGpu => ggml_sys::GGML_BACKEND_DEVICE_TYPE_IGPU,
            DeviceType::Accelerator => ggml_sys::GGML_BACKEND_DEVICE_TYPE_ACCEL,
            DeviceType::Meta => ggml_sys::GGML_BACKEND_DEVICE_TYPE_META,
        }
    }
}

impl fmt::Display for DeviceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceType::Cpu => "CPU",
            DeviceType::Gpu => "GPU",
            DeviceType::IntegratedGpu => "integrated GPU",
            DeviceType::Accelerator => "accelerator",
            DeviceType::Meta => "meta",
        })
    }
}

/// Free and total memory of a device, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMemory {
    /// Bytes free now.
    pub free: usize,
    /// Bytes in all.
    pub total: usize,
}

/// What a device can do beyond computing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceCaps {
    /// Asynchronous copies and computation.
    pub asynchronous: bool,
    /// A pinned host buffer type ([`Device::host_buffer_type`]).
    pub host_buffer: bool,
    /// Buffers over host memory.
    pub buffer_from_host_ptr: bool,
    /// Events for synchronisation between backends.
    pub events: bool,
}

/// A device of ggml's backend registry: the CPU, a GPU, an accelerator.
///
/// A `Copy` handle: the registry keeps its devices for the whole process.
/// Backends loaded at run time (`GGML_BACKEND_DL` installs) are loaded
/// before the first device is listed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Device(RawDevice<'static>);

// SAFETY: registry devices are static and immutable once registered; their
// queries are thread-safe (ggml-backend's devices keep no per-call state).
unsafe impl Send for Device {}
// SAFETY: as above.
unsafe impl Sync for Device {}

/// Every device of the registry, in its order (GPUs first, the CPU last in
/// ggml's builds).
///
/// # Errors
/// [`Error::Abi`] when the loaded library does not match the bindings.
pub fn devices() -> Result<Vec<Device>> {
    crate::init::ensure()?;
    Ok(raw::devices().map(Device).collect())
}

/// The GPU backends this build compiled in, for error advice.
fn gpu_features() -> &'static [&'static str] {
    &[
        #[cfg(feature = "cuda")]
        "cuda",
        #[cfg(feature = "metal")]
        "metal",
        #[cfg(feature = "vulkan")]
        "vulkan",
    ]
}

fn gpu_advice() -> String {
    let features = gpu_features();
    if !features.is_empty() {
        return format!(
            ": the {} feature is on, but the backend found no usable device (driver, \
             visible devices, permissions?)",
            features.join("/")
        );
    }
    if cfg!(ggml_cpu_backend) {
        "; this build has no GPU backend: enable the `cuda`, `metal` or `vulkan` \
         feature of ggml-2"
            .into()
    } else {
        "; no GPU backend module was loaded from this GGML_BACKEND_DL install \
         (install one, or point GGML_BACKEND_PATH at it)"
            .into()
    }
}

impl Device {
    /// The raw layer's handle of the device.
    pub(crate) fn raw(&self) -> RawDevice<'static> {
        self.0
    }

    /// A device from the raw layer's handle (one that lives for the process).
    #[cfg(feature = "rpc")]
    pub(crate) fn from_raw(raw: RawDevice<'static>) -> Device {
        Device(raw)
    }

    /// Device number `index` of [`devices`].
    ///
    /// # Errors
    /// [`Error::NoDevice`] when there are not that many.
    pub fn get(index: usize) -> Result<Device> {
        devices()?
            .get(index)
            .copied()
            .ok_or_else(|| Error::NoDevice {
                wanted: format!("number {index}"),
                advice: String::new(),
            })
    }

    /// The device named `name` (`"CPU"`, `"CUDA0"`, `"Vulkan1"`, ...; case
    /// does not matter).
    ///
    /// # Errors
    /// [`Error::NoDevice`].
    pub fn by_name(name: &str) -> Result<Device> {
        crate::init::ensure()?;
        let missing = || Error::NoDevice {
            wanted: format!("named '{name}'"),
            advice: String::new(),
        };
        let c = CString::new(name).map_err(|_| missing())?;
        raw::device_by_name(&c).map(Device).ok_or_else(missing)
    }

    /// The first device of type `ty`.
    ///
    /// # Errors
    /// [`Error::NoDevice`], saying which feature would provide one.
    pub fn by_type(ty: DeviceType) -> Result<Device> {
        crate::init::ensure()?;
        raw::device_by_type(ty.as_raw())
            .map(Device)
            .ok_or_else(|| Error::NoDevice {
                wanted: ty.to_string(),
                advice: match ty {
                    DeviceType::Gpu | DeviceType::IntegratedGpu => gpu_advice(),
                    _ => String::new(),
                },
            })
    }

    /// The CPU.
    ///
    /// # Errors
    /// [`Error::NoDevice`] when no CPU backend is present (a
    /// `GGML_BACKEND_DL` install without its CPU module).
    pub fn cpu() -> Result<Device> {
        Device::by_type(DeviceType::Cpu).map_err(|_| Error::NoDevice {
            wanted: "CPU".into(),
            advice: "; is the CPU backend module (libggml-cpu*.so) installed?".into(),
        })
    }

    /// The first GPU: a discrete one if any, else an integrated one.
    ///
    /// # Errors
    /// [`Error::NoDevice`], saying which feature to enable when the build
    /// has no GPU backend.
    pub fn gpu() -> Result<Device> {
        Device::by_type(DeviceType::Gpu)
            .or_else(|_| Device::by_type(DeviceType::IntegratedGpu))
            .map_err(|_| Error::NoDevice {
                wanted: "GPU".into(),
                advice: gpu_advice(),
            })
    }

    /// The device tests and examples should use: `GGML_TEST_DEVICE` (a
    /// device name such as `CUDA0`, or `cpu` / `gpu`), else the CPU.
    ///
    /// # Errors
    /// [`Error::NoDevice`] when the variable names a device there is not.
    pub fn from_env() -> Result<Device> {
        match std::env::var("GGML_TEST_DEVICE") {
            Ok(name) if name.eq_ignore_ascii_case("gpu") => Device::gpu(),
            Ok(name) if !name.is_empty() && !name.eq_ignore_ascii_case("cpu") => {
                Device::by_name(&name)
            }
            _ => Device::cpu(),
        }
    }

    /// Name (`"CPU"`, `"CUDA0"`, ...).
    pub fn name(&self) -> String {
        self.0.name()
    }

    /// Description (the CPU's or GPU's model name).
    pub fn description(&self) -> String {
        self.0.description()
    }

    /// The kind of device; `None` for a kind this crate does not know.
    pub fn device_type(&self) -> Option<DeviceType> {
        DeviceType::from_raw(self.0.device_type())
    }

    /// Whether this is the CPU.
    pub fn is_cpu(&self) -> bool {
        self.device_type() == Some(DeviceType::Cpu)
    }

    /// Free and total memory now.
    pub fn memory(&self) -> DeviceMemory {
        let (free, total) = self.0.memory();
        DeviceMemory { free, total }
    }

    /// Capabilities beyond computing.
    pub fn caps(&self) -> DeviceCaps {
        let props = self.0.props();
        DeviceCaps {
            asynchronous: props.caps.async_,
            host_buffer: props.caps.host_buffer,
            buffer_from_host_ptr: props.caps.buffer_from_host_ptr,
            events: props.caps.events,
        }
    }

    /// The device's own memory.
    pub fn buffer_type(&self) -> BufferType {
        BufferType::from_raw(self.0.buffer_type().expect("a device has a buffer type"))
    }

    /// Pinned host memory the device reaches fast, if it offers some (CUDA
    /// does; the CPU does not).
    pub fn host_buffer_type(&self) -> Option<BufferType> {
        self.0.host_buffer_type().map(BufferType::from_raw)
    }

    /// Whether the device's backend can use memory of `buffer_type`.
    pub fn supports_buffer_type(&self, buffer_type: BufferType) -> bool {
        self.0.supports_buft(buffer_type.raw())
    }

    /// Starts a backend (an execution stream) on this device.
    ///
    /// # Errors
    /// [`Error::BackendInit`].
    pub fn backend(&self) -> Result<Backend> {
        Backend::new(*self)
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("name", &self.name())
            .field("description", &self.description())
            .field("type", &self.device_type())
            .finish()
    }
}
