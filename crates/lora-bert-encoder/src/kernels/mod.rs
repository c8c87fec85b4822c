//! Kernels of our own for the CPU backends, where burn's generic ops are slow.
//!
//! burn's CPU backends compute `erf` and `exp` one element at a time through libm on one
//! thread, and draw dropout masks from one ChaCha generator, also on one thread. On two cores
//! that made the exact GELU about a tenth of all-MiniLM-L6-v2's forward pass (perf, 32 × 128 on
//! flex), and GELU (forward and backward) plus dropout masks about half of a LoRA training step
//! (perf, 16 × 128). In training, flex also runs every element-wise op on one thread, and
//! burn's autodiff records softmax and layer norm as many such ops each. The kernels here do
//! the same work in one parallel pass each, with arithmetic that vectorises:
//!
//! - [`gelu`]: the exact GELU. Without autodiff, one pass over the data. With autodiff, the
//!   value and the derivative come from one pass and the graph records `x ⊙ d + c` (`d` the
//!   derivative, `c = gelu(x) − x ⊙ d` a constant), whose gradient is the exact derivative
//!   (burn's on flex; ndarray's own is the tanh approximation's).
//! - [`dropout`]: burn's [`Dropout`] with the mask drawn by a counter-based generator over
//!   rayon's threads, seeded from burn's generator (so [`Device::seed`] still makes runs
//!   repeatable), and applied in one multiplication.
//! - `attention` (crate-internal, the encoder's inference path): per example and head, two
//!   strided `gemm` calls and a softmax, without burn's head split and merge copies.
//! - `attention_recorded` (crate-internal, the training path on flex): the same, with dropout
//!   on the probabilities, recorded on `Autodiff<Flex>` as one op whose backward pass is five
//!   strided `gemm` calls and a row pass per example and head.
//! - `attention_probs` (crate-internal, the training path on ndarray): softmax and dropout
//!   recorded as an affine map of the scores with the same value and gradient.
//! - [`layer_norm`]: burn's layer norm; with autodiff on flex, one op of our own with a
//!   parallel pass each way.
//! - [`erf`] and [`exp`]: the branch-free scalar functions the loops above are made of.
//!
//! The ops recorded on `Autodiff<Flex>` use burn's extension API
//! ([`Tensor::try_into_primitive`] and burn-autodiff's `Backward` trait):
//! their forward pass reads the flex buffers in place and their backward pass registers the
//! gradients of the inputs that need one.
//!
//! The kernels run only where they can: a CPU device (flex or ndarray; with or without
//! autodiff, except `attention`, which is for inference) and `f32` tensors. Everywhere else
//! (GPU backends keep their own kernels) they are burn's ops.
//!
//! [`Dropout`]: burn::nn::Dropout
//! [`Tensor::try_into_primitive`]: burn::tensor::Tensor::try_into_primitive

use burn::tensor::Device;

/// Elements per rayon task: big enough that scheduling costs nothing next to the work.
const CHUNK: usize = 1 << 14;

/// Defines `$vis fn $name(args)` that runs `$any(args)` compiled for AVX-512 or AVX2 when the CPU
/// has them (checked at run time), and as plain code otherwise. `$any` is `#[inline(always)]`
/// and written so that its loops vectorise: plain multiply-adds (`mul_add` without FMA enabled
/// at compile time is a slow library call), no branches, reductions over several accumulators.
macro_rules! widest_vectors {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $any:ident) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $any($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $any($($arg),*)
                }
                if is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the feature the function is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if is_x86_feature_detected!("avx2") {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $any($($arg),*)
        }
    };
}

mod activation;
mod attention;
mod dropout;
mod math;
mod norm;

/// Ops recorded on `Autodiff<Flex>` with host code for both passes: one op where burn's
/// autodiff records several, each of them a single-threaded pass over the data on flex.
#[cfg(feature = "flex")]
mod recorded;

pub use activation::gelu;
pub(crate) use attention::attention_probs;
#[cfg(feature = "flex")]
pub(crate) use attention::{attention, attention_recorded};
pub use dropout::dropout;
pub use math::{erf, exp};
pub use norm::layer_norm;

/// Whether `device` computes on this CPU (flex or ndarray), with or without autodiff.
pub(crate) fn host_cpu(device: &Device) -> bool {
    let device = device.clone().without_autodiff();
    #[cfg(feature = "flex")]
    if device == Device::flex() {
        return true;
    }
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    if device == Device::ndarray() {
        return true;
    }
    let _ = device;
    false
}

/// Whether `device` computes on this CPU without recording a graph.
pub(crate) fn host_inference(device: &Device) -> bool {
    !device.is_autodiff() && host_cpu(device)
}

#[cfg(test)]
mod tests;
