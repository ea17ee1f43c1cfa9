//! Picking the tch device, and making CUDA visible at all.
//!
//! rustc links with `--as-needed`, which drops `libtorch_cuda.so` (nothing references its symbols directly), so
//! `tch::Cuda::is_available()` would say false on a CUDA machine. Loading it by hand at start-up registers the
//! CUDA backend. On a machine without CUDA libraries the load fails quietly and we train on the CPU.

use tch::Device;

/// Loads `libtorch_cuda.so` if it is present; returns whether it loaded.
pub fn load_cuda() -> bool {
    static LOADED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LOADED.get_or_init(|| {
        let name = c"libtorch_cuda.so";
        // SAFETY: dlopen with a valid NUL-terminated name; the handle is intentionally leaked so the
        // library stays loaded for the life of the process.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        !handle.is_null()
    })
}

/// Resolves `auto`, `cpu`, `cuda` or `cuda:N`.
pub fn parse(spec: &str) -> Result<Device, String> {
    match spec {
        "auto" => {
            load_cuda();
            Ok(Device::cuda_if_available())
        }
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let idx = s
                .strip_prefix("cuda:")
                .map(|i| i.parse::<usize>())
                .transpose();
            let idx = idx
                .map_err(|_| format!("bad device {s:?}: expected cuda:N"))?
                .unwrap_or(0);
            if !load_cuda() || !tch::Cuda::is_available() {
                return Err(format!("device {s:?} requested but CUDA is not available (libtorch_cuda.so not loadable or no GPU)"));
            }
            Ok(Device::Cuda(idx))
        }
        other => Err(format!(
            "unknown device {other:?}: use auto, cpu, cuda or cuda:N"
        )),
    }
}
