//! Every device lora-bert runs on is built here, and only here.
//!
//! The rest of the workspace takes a `&Device` and never names a backend. Which backends exist
//! depends on the crate features (`ndarray`, `flex`, `wgpu`); asking for one that was not
//! compiled in, or for a GPU that is not there, is a [`DeviceError`], never a panic.
//!
//! ```
//! use lora_bert_encoder::device::{Backend, device};
//!
//! let backend: Backend = "flex".parse()?;
//! let cpu = device(backend)?;
//! let training = lora_bert_encoder::device::autodiff(cpu.clone());
//! # Ok::<(), lora_bert_encoder::device::DeviceError>(())
//! ```

use std::fmt;
use std::str::FromStr;

pub use burn::tensor::Device;

/// A compute backend lora-bert can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// burn's ndarray CPU backend (feature `ndarray`; deprecated upstream in burn 0.22).
    NdArray,
    /// burn's pure-Rust flex CPU backend (feature `flex`).
    Flex,
    /// wgpu: Vulkan, Metal or DX12 GPUs, or lavapipe on CPU-only Linux (feature `wgpu`).
    Wgpu,
}

/// Why a device could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The backend was not compiled in.
    #[error("backend `{backend}` is not compiled in: enable the `{backend}` cargo feature")]
    NotCompiled {
        /// The requested backend.
        backend: Backend,
    },
    /// The name does not denote a backend.
    #[error("unknown backend `{0}` (expected one of: ndarray, flex, wgpu)")]
    Unknown(String),
    /// No usable wgpu adapter (no GPU, no Vulkan/Metal driver, no lavapipe).
    #[error("no wgpu adapter could be initialised: {0}")]
    NoAdapter(String),
}

impl Backend {
    /// Every backend, compiled in or not.
    pub const ALL: [Backend; 3] = [Backend::NdArray, Backend::Flex, Backend::Wgpu];

    /// The lower-case name used on command lines and in cargo features.
    pub fn name(self) -> &'static str {
        match self {
            Backend::NdArray => "ndarray",
            Backend::Flex => "flex",
            Backend::Wgpu => "wgpu",
        }
    }

    /// Whether this build contains the backend.
    pub fn is_compiled(self) -> bool {
        match self {
            Backend::NdArray => cfg!(feature = "ndarray"),
            Backend::Flex => cfg!(feature = "flex"),
            Backend::Wgpu => cfg!(feature = "wgpu"),
        }
    }

    /// The backends this build contains, CPU ones first.
    pub fn compiled() -> Vec<Backend> {
        Self::ALL.into_iter().filter(|b| b.is_compiled()).collect()
    }

    /// The preferred CPU backend of this build: flex if compiled, else ndarray.
    pub fn default_cpu() -> Result<Backend, DeviceError> {
        [Backend::Flex, Backend::NdArray]
            .into_iter()
            .find(|b| b.is_compiled())
            .ok_or(DeviceError::NotCompiled {
                backend: Backend::Flex,
            })
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| DeviceError::Unknown(s.to_owned()))
    }
}

/// Builds the inference device of a backend (no autodiff).
///
/// For wgpu the runtime is initialised once per process on the default adapter; later calls
/// return the same device. A machine without a usable adapter gives
/// [`DeviceError::NoAdapter`].
pub fn device(backend: Backend) -> Result<Device, DeviceError> {
    match backend {
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        // ndarray is the customer's named CPU backend; flex is its successor.
        Backend::NdArray => Ok(Device::ndarray()),
        #[cfg(feature = "flex")]
        Backend::Flex => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => wgpu_device(),
        #[allow(unreachable_patterns)]
        other => Err(DeviceError::NotCompiled { backend: other }),
    }
}

/// The same device with automatic differentiation, for training.
pub fn autodiff(device: Device) -> Device {
    device.autodiff()
}

/// Whether tensors on this device record a graph for backpropagation.
pub fn is_autodiff(device: &Device) -> bool {
    device.is_autodiff()
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device, DeviceError> {
    use std::sync::OnceLock;
    static WGPU: OnceLock<Result<Device, String>> = OnceLock::new();
    WGPU.get_or_init(|| {
        // Initialising the runtime panics inside some drivers instead of returning an error;
        // contain that so a missing GPU is an error for the caller.
        std::panic::catch_unwind(|| Device::wgpu_options().init())
            .map_err(|panic| {
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "the wgpu runtime panicked".into())
            })
            .and_then(|r| r.map_err(|e| e.to_string()))
    })
    .clone()
    .map_err(DeviceError::NoAdapter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        assert_eq!("ndarray".parse::<Backend>().unwrap(), Backend::NdArray);
        assert_eq!(" FLEX ".parse::<Backend>().unwrap(), Backend::Flex);
        assert_eq!("wgpu".parse::<Backend>().unwrap(), Backend::Wgpu);
        assert!(matches!(
            "cuda".parse::<Backend>(),
            Err(DeviceError::Unknown(_))
        ));
    }

    #[test]
    fn builds_every_compiled_cpu_backend() {
        for backend in Backend::compiled() {
            if backend == Backend::Wgpu {
                continue;
            }
            let d = device(backend).unwrap();
            assert!(!is_autodiff(&d));
            assert!(is_autodiff(&autodiff(d)));
        }
    }

    #[test]
    fn missing_backend_is_an_error() {
        for backend in Backend::ALL {
            if !backend.is_compiled() {
                assert!(matches!(
                    device(backend),
                    Err(DeviceError::NotCompiled { .. })
                ));
            }
        }
    }
}
