//! Never built: this package only pins the llama.cpp source (see Cargo.toml).
