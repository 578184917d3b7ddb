//! DeepSeek's ops: the lightning indexer of sparse attention and V4's
//! hyper-connections.

use crate::ops::Decl;

/// The declarations.
pub(crate) const DECLS: &[Decl] = &[];
