//! The one mapping between ndarray shapes and ggml's `ne`.
//!
//! ggml's `ne[0]` is the fastest-moving (innermost) axis; ndarray's last axis
//! is. An ndarray of shape `[d0, d1, ..., dk]` in row-major order is a tensor
//! with `ne = [dk, ..., d1, d0]`, padded with 1s to four dimensions.

use crate::error::{Error, Result};

/// Most dimensions a tensor has.
pub const MAX_DIMS: usize = ggml_sys::GGML_MAX_DIMS as usize;

/// `ne` of an ndarray shape (rank 0 to 4; rank 0 is one element).
pub fn ne_from_shape(shape: &[usize]) -> Result<[i64; MAX_DIMS]> {
    if shape.len() > MAX_DIMS {
        return Err(Error::InvalidShape {
            shape: shape.to_vec(),
            reason: format!("ggml tensors have at most {MAX_DIMS} dimensions"),
        });
    }
    let mut ne = [1i64; MAX_DIMS];
    for (i, &d) in shape.iter().rev().enumerate() {
        ne[i] = i64::try_from(d).map_err(|_| Error::InvalidShape {
            shape: shape.to_vec(),
            reason: format!("dimension {d} does not fit in i64"),
        })?;
    }
    let total = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if total.is_none_or(|t| t > isize::MAX as usize) {
        return Err(Error::InvalidShape {
            shape: shape.to_vec(),
            reason: "too many elements".into(),
        });
    }
    Ok(ne)
}

/// The ndarray shape of `ne` with `rank` axes (`rank` ≥ the dimensions in use).
pub fn shape_from_ne(ne: &[i64; MAX_DIMS], rank: usize) -> Vec<usize> {
    (0..rank).rev().map(|i| ne[i] as usize).collect()
}

/// How many leading axes of `ne` are in use (at least 1), like `ggml_n_dims`.
pub fn n_dims(ne: &[i64; MAX_DIMS]) -> usize {
    (1..MAX_DIMS)
        .rev()
        .find(|&i| ne[i] != 1)
        .map_or(1, |i| i + 1)
}

/// Whether two shapes describe the same tensor shape once padded with leading 1s.
pub fn same_padded(a: &[usize], b: &[usize]) -> bool {
    match (ne_from_shape(a), ne_from_shape(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndarray_shape_maps_to_reversed_ne() {
        assert_eq!(ne_from_shape(&[2, 3, 4]).unwrap(), [4, 3, 2, 1]);
        assert_eq!(ne_from_shape(&[]).unwrap(), [1, 1, 1, 1]);
        assert_eq!(shape_from_ne(&[4, 3, 2, 1], 3), vec![2, 3, 4]);
        assert_eq!(shape_from_ne(&[4, 3, 2, 1], 4), vec![1, 2, 3, 4]);
        assert_eq!(n_dims(&[4, 3, 1, 1]), 2);
        assert_eq!(n_dims(&[1, 1, 1, 1]), 1);
        assert!(ne_from_shape(&[1, 2, 3, 4, 5]).is_err());
        assert!(same_padded(&[1, 5], &[5]));
        assert!(!same_padded(&[5, 1], &[5]));
    }
}
