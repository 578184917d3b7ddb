//! Facts about a tensor's strided layout (type, `ne`, `nb`) that the guard
//! layer checks before ggml or the crate touches the bytes: contiguity as
//! ggml defines it, dense rows, alignment, and whether two indices can reach
//! the same bytes (a destination that overlaps itself would make ggml's
//! threads write the same memory at once).

use crate::shape::MAX_DIMS;
use crate::size::{self, Nb, Ne};
use crate::types::Type;

/// A tensor's layout: type, elements and byte strides per dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub ty: Type,
    pub ne: Ne,
    pub nb: Nb,
}

impl Layout {
    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.ne.contains(&0)
    }

    /// Bytes the layout spans (`ggml_nbytes`), `None` on overflow.
    pub fn span(&self) -> Option<usize> {
        size::span_bytes(self.ty, &self.ne, &self.nb)
    }

    /// `ggml_is_contiguous`: dense in ggml's order (strides of dimensions of
    /// length 1 do not matter; nor does `nb[0]` when a row is one block).
    pub fn is_contiguous(&self) -> bool {
        let (ty, ne, nb) = (self.ty, &self.ne, &self.nb);
        let block = ty.block_size() as i64;
        let mut next = ty.type_size();
        if ne[0] != block && nb[0] != next {
            return false;
        }
        next = next.saturating_mul((ne[0] / block) as usize);
        for i in 1..MAX_DIMS {
            if ne[i] != 1 && nb[i] != next {
                return false;
            }
            next = next.saturating_mul(ne[i] as usize);
        }
        true
    }

    /// `ggml_is_contiguous_n(t, n)` (ggml's `ggml_is_contiguous_m_n(t, n, 4)`):
    /// dense in ggml's order, except that dimensions `1..=n` may have any
    /// stride, the next dimension then starting at `ne[n]·nb[n]`
    /// (`is_contiguous_n(0)` is [`Layout::is_contiguous`]; ggml's
    /// `ggml_is_contiguous_1` and `_2` are `n` 1 and 2).
    pub fn is_contiguous_n(&self, n: usize) -> bool {
        let (ty, ne, nb) = (self.ty, &self.ne, &self.nb);
        let block = ty.block_size() as i64;
        let mut next = ty.type_size();
        if ne[0] != block && nb[0] != next {
            return false;
        }
        next = next.saturating_mul((ne[0] / block) as usize);
        for i in 1..MAX_DIMS {
            if i > n {
                if ne[i] != 1 && nb[i] != next {
                    return false;
                }
                next = next.saturating_mul(ne[i] as usize);
            } else {
                next = (ne[i] as usize).saturating_mul(nb[i]);
            }
        }
        true
    }

    /// Whether the values of a row (`ne[0]`) are dense: `nb[0]` is one
    /// element (one block for quantized types), as row kernels need.
    pub fn rows_are_dense(&self) -> bool {
        self.nb[0] == self.ty.type_size()
    }

    /// `ggml_is_padded_1d`: dense rows, dimensions 2 and 3 dense over 1.
    pub fn is_padded_1d(&self) -> bool {
        let (ne, nb) = (&self.ne, &self.nb);
        self.rows_are_dense()
            && Some(nb[2]) == nb[1].checked_mul(ne[1] as usize)
            && Some(nb[3]) == nb[2].checked_mul(ne[2] as usize)
    }

    /// Whether every stride and `offset` are whole elements (whole blocks for
    /// quantized types): elements stay aligned, rows start on block
    /// boundaries, and kernels that divide strides by the type size (the
    /// llamafile matrix products) get exact answers.
    /// (Strides of dimensions of length 1 never move and are not checked.)
    pub fn strides_whole(&self, offset: usize) -> bool {
        let unit = self.ty.type_size();
        let moving = self.ne.iter().zip(&self.nb).filter(|&(&n, _)| n > 1);
        offset % unit == 0 && moving.map(|(_, &s)| s).all(|s| s % unit == 0)
    }

    /// Whether no two indices of the tensor reach a common byte.
    ///
    /// Sufficient test: ordered by stride, each dimension of length > 1 steps
    /// past everything the faster ones span. (A layout that interleaves
    /// dimensions without overlap fails it; no op of ggml makes one.)
    pub fn is_injective(&self) -> bool {
        if self.is_empty() {
            return true;
        }
        let ty = self.ty;
        // Units: elements, or blocks for quantized types (dimension 0 counts
        // blocks of a row).
        let mut dims: Vec<(usize, usize)> = (0..MAX_DIMS)
            .map(|i| {
                let n = if i == 0 {
                    self.ne[0] as usize / ty.block_size()
                } else {
                    self.ne[i] as usize
                };
                (self.nb[i], n)
            })
            .filter(|&(_, n)| n > 1)
            .collect();
        dims.sort_unstable();
        let mut extent = ty.type_size();
        for (stride, n) in dims {
            if stride < extent {
                return false;
            }
            match (n - 1)
                .checked_mul(stride)
                .and_then(|s| s.checked_add(extent))
            {
                Some(e) => extent = e,
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32(ne: [i64; 4], nb: [usize; 4]) -> Layout {
        Layout {
            ty: Type::F32,
            ne,
            nb,
        }
    }

    #[test]
    fn contiguity_is_ggml_s() {
        assert!(f32([4, 3, 1, 1], [4, 16, 48, 48]).is_contiguous());
        assert!(!f32([3, 4, 1, 1], [16, 4, 48, 48]).is_contiguous());
        // A dimension of length 1 may have any stride.
        assert!(f32([4, 1, 2, 1], [4, 999, 16, 32]).is_contiguous());
        assert!(f32([1, 4, 1, 1], [64, 4, 16, 16]).is_contiguous());
    }

    #[test]
    fn injectivity() {
        assert!(f32([4, 3, 1, 1], [4, 16, 48, 48]).is_injective());
        assert!(
            f32([3, 4, 1, 1], [16, 4, 48, 48]).is_injective(),
            "transposed"
        );
        assert!(
            f32([4, 3, 1, 1], [4, 20, 60, 60]).is_injective(),
            "padded rows"
        );
        assert!(
            !f32([13, 4, 1, 1], [4, 4, 16, 16]).is_injective(),
            "overlapping rows"
        );
        assert!(!f32([4, 3, 1, 1], [4, 0, 0, 0]).is_injective(), "stride 0");
        assert!(f32([4, 0, 1, 1], [4, 0, 0, 0]).is_injective(), "empty");
        assert!(f32([4, 1, 1, 1], [4, 0, 0, 0]).is_injective());
        let q = Layout {
            ty: Type::Q8_0,
            ne: [64, 2, 1, 1],
            nb: [34, 68, 136, 136],
        };
        assert!(q.is_injective());
        assert!(!Layout {
            nb: [34, 34, 68, 68],
            ..q
        }
        .is_injective());
    }

    #[test]
    fn strides_are_whole_elements() {
        assert!(!f32([4, 1, 1, 1], [4, 16, 16, 16]).strides_whole(2));
        assert!(f32([4, 1, 1, 1], [4, 16, 16, 16]).strides_whole(8));
        assert!(!f32([4, 2, 1, 1], [4, 18, 36, 36]).strides_whole(0));
        let q = Layout {
            ty: Type::Q4_0,
            ne: [32, 2, 1, 1],
            nb: [18, 36, 72, 72],
        };
        assert!(q.strides_whole(18) && !q.strides_whole(2));
    }
}
