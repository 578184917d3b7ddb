//! Direct and transposed convolutions, im2col and pooling gradients.
