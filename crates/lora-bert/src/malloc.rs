//! Process-wide allocator settings that make the CPU backends faster.
//!
//! The CPU backends allocate a fresh buffer for almost every intermediate tensor of a forward or
//! backward pass: several MB each for a batch of 128-token sequences. glibc's `malloc` serves
//! blocks that large with `mmap` and hands them back to the kernel on `free`, so the next tensor
//! touches fresh pages, and each first touch is a page fault that zeroes a page. On this
//! project's 2-core build machine that was about a tenth of all-MiniLM-L6-v2's forward pass
//! (perf). With [`keep_freed_memory`], a forward pass at 32 × 128 took 527 ms instead of 659 ms
//! and a LoRA training step at 16 × 128 1.04 s instead of 1.32 s, with the same peak memory; one
//! sentence (1 × 128, small tensors) gained 2 % (docs/benchmarks.md, side-by-side run).
//!
//! It is a setting of the whole process, so the library never applies it by itself: call it at
//! the start of `main`, as the examples do.
//!
//! ```
//! let tuning = lora_bert::malloc::keep_freed_memory();
//! println!("allocator: {tuning}");
//! ```

use std::fmt;

/// What [`keep_freed_memory`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// glibc now serves blocks up to [`MMAP_THRESHOLD`] bytes from its heap and keeps freed
    /// memory for reuse.
    Applied,
    /// glibc refused a setting (the mmap threshold is set first: if only the trim threshold
    /// was refused, the mmap threshold stays raised).
    Refused,
    /// Not a glibc target: the platform's allocator is left as it is.
    Unsupported,
}

impl fmt::Display for Tuning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tuning::Applied => "glibc malloc keeps freed memory for reuse",
            Tuning::Refused => "glibc malloc refused the settings (left as it was)",
            Tuning::Unsupported => "platform allocator (not glibc), left as it is",
        })
    }
}

/// Blocks below this size come from the heap instead of their own `mmap`: 32 MiB, glibc's
/// largest allowed value, above an attention score tensor of 32 × 12 × 128 × 128 `f32` (25 MB).
pub const MMAP_THRESHOLD: usize = 32 << 20;

/// Keeps freed memory in the process instead of returning it to the kernel after every large
/// tensor (see the [module docs](self)): raises glibc's `M_MMAP_THRESHOLD` to
/// [`MMAP_THRESHOLD`] and its `M_TRIM_THRESHOLD` to 2 GiB with `mallopt`.
///
/// The process's resident memory then stays near its peak instead of falling back between
/// passes; the peak itself does not grow. Call it once, early, before other threads allocate.
/// On targets other than Linux with glibc it does nothing and says so.
pub fn keep_freed_memory() -> Tuning {
    imp::keep_freed_memory()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use super::{MMAP_THRESHOLD, Tuning};

    pub(super) fn keep_freed_memory() -> Tuning {
        const TRIM_THRESHOLD: libc::c_int = libc::c_int::MAX;
        // SAFETY: mallopt only changes glibc's thresholds; it is safe to call at any time.
        let mmap = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) };
        if mmap != 1 {
            return Tuning::Refused;
        }
        // SAFETY: as above.
        let trim = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) };
        if trim != 1 {
            return Tuning::Refused;
        }
        Tuning::Applied
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    use super::Tuning;

    pub(super) fn keep_freed_memory() -> Tuning {
        Tuning::Unsupported
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_takes_the_settings() {
        let tuning = keep_freed_memory();
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert_eq!(tuning, Tuning::Applied);
        } else {
            assert_eq!(tuning, Tuning::Unsupported);
        }
        // Large blocks still allocate and free normally afterwards.
        let v = vec![1.0f32; MMAP_THRESHOLD / 4 + 1];
        assert_eq!(v.iter().sum::<f32>(), v.len() as f32);
    }
}
