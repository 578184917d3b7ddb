//! Direct convolution kernels, transposed convolutions and the gradients of
//! im2col and pooling.

use crate::ops::Decl;

/// The declarations.
pub(crate) const DECLS: &[Decl] = &[];
