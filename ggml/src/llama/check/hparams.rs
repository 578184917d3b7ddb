//! Hyperparameters (placeholder while the loader audit is written up).

use super::Finding;
use crate::gguf::Gguf;

/// Architectures whose files this crate validates.
pub(crate) const ARCHITECTURES: &[&str] = &["llama"];

pub(crate) fn check(_file: &Gguf, arch: &str) -> Result<(), Finding> {
    if !ARCHITECTURES.contains(&arch) {
        return Err(Finding::new(
            "general.architecture",
            format!(
                "architecture '{arch}' is not one this crate validates ({})",
                ARCHITECTURES.join(", ")
            ),
        ));
    }
    Ok(())
}
