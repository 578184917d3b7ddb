//! Build script of `ggml-sys`: a short dispatcher.
//!
//! 1. [`env`] reads the features and environment variables (each one declared
//!    with `rerun-if-env-changed` and echoed into the build log).
//! 2. One of three ways to get a library:
//!    - [`source`]: build the pinned (or the user's) llama.cpp with its own CMake;
//!    - [`system`]: probe a prebuilt `llama` with pkg-config (`GGML_SYS_USE_PKG_CONFIG=1`
//!      or the `system` feature);
//!    - docs.rs (`DOCS_RS` set): headers only, nothing native is built or linked.
//! 3. [`bindings`] runs bindgen over `wrapper.h` with the headers of *that* library.
//!    Both library modes compile the C++ exception barrier ([`barrier`]) first.
//! 4. [`library`] exports `links` metadata and the constants the crate reads at run time.

mod backends;
mod barrier;
mod bindings;
mod env;
mod fail;
mod library;
mod link;
mod source;
mod system;

fn main() {
    let config = env::Config::read();
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=wrapper.h");

    let library = if config.docs_rs {
        source::headers_only(&config)
    } else if config.use_system {
        system::probe(&config)
    } else {
        source::build(&config)
    };

    bindings::generate(&config, &library);
    library.export(&config);
}
