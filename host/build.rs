//! torch-sys links libtorch but bakes no rpath into our binaries, so they would only start with
//! `LD_LIBRARY_PATH` set. Add the libtorch directory torch-sys found as an rpath (tests and benches too).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
