//! How tensors and graphs travel: ggml's `rpc_tensor` (packed, 296 bytes)
//! and its graph message, written field by field in the host's byte order.

use std::collections::{HashMap, HashSet};

use ggml_sys as sys;

/// Size of one serialised tensor (`sizeof(rpc_tensor)`).
pub(crate) const TENSOR_SIZE: usize = 8 + 4 + 8 + 16 + 16 + 4 + 64 + 4 + 80 + 8 + 8 + 8 + 64 + 4;

/// Where a tensor's memory is on the worker: its buffer's handle there and
/// its address there; `None` for memory the worker does not hold.
pub(crate) type Placement<'a> = &'a dyn Fn(*const sys::ggml_tensor) -> Option<(u64, u64)>;

/// Why a tensor cannot be sent.
pub(crate) fn unsendable(t: &sys::ggml_tensor) -> Option<String> {
    for d in 0..4 {
        if u32::try_from(t.ne[d]).is_err() || u32::try_from(t.nb[d]).is_err() {
            return Some(format!(
                "tensor {:?} has ne {:?} nb {:?}: the protocol carries sizes and strides in 32 bits",
                name(t),
                t.ne,
                t.nb
            ));
        }
    }
    if matches!(
        t.op,
        sys::GGML_OP_MAP_CUSTOM1
            | sys::GGML_OP_MAP_CUSTOM2
            | sys::GGML_OP_MAP_CUSTOM3
            | sys::GGML_OP_CUSTOM
    ) {
        return Some(format!(
            "tensor {:?} is a custom op, whose function lives in this process",
            name(t)
        ));
    }
    None
}

/// The tensor's name as text.
pub(crate) fn name(t: &sys::ggml_tensor) -> String {
    let bytes: Vec<u8> = t
        .name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Appends `t` serialised (`serialize_tensor`), `use_count` included.
///
/// # Safety
/// `t` is NULL or a live tensor.
pub(crate) unsafe fn put_tensor(
    out: &mut Vec<u8>,
    t: *const sys::ggml_tensor,
    place: Placement<'_>,
    use_count: i32,
) {
    let start = out.len();
    // SAFETY: the caller's contract.
    let Some(tr) = (unsafe { t.as_ref() }) else {
        out.resize(start + TENSOR_SIZE, 0);
        return;
    };
    let (buffer, data) = place(t).unwrap_or((0, 0));
    out.extend_from_slice(&(t as u64).to_ne_bytes());
    out.extend_from_slice(&tr.type_.to_ne_bytes());
    out.extend_from_slice(&buffer.to_ne_bytes());
    // Checked by `unsendable` before; truncation as ggml's own client does
    // if a caller skipped it.
    for ne in tr.ne {
        out.extend_from_slice(&(ne as u32).to_ne_bytes());
    }
    for nb in tr.nb {
        out.extend_from_slice(&(nb as u32).to_ne_bytes());
    }
    out.extend_from_slice(&tr.op.to_ne_bytes());
    for p in tr.op_params {
        out.extend_from_slice(&p.to_ne_bytes());
    }
    out.extend_from_slice(&tr.flags.to_ne_bytes());
    for s in tr.src {
        out.extend_from_slice(&(s as u64).to_ne_bytes());
    }
    out.extend_from_slice(&(tr.view_src as u64).to_ne_bytes());
    out.extend_from_slice(&(tr.view_offs as u64).to_ne_bytes());
    out.extend_from_slice(&data.to_ne_bytes());
    // The name up to its NUL, zero-padded (no uninitialised bytes travel).
    let mut name = [0u8; 64];
    for (dst, &c) in name.iter_mut().zip(tr.name.iter().take(63)) {
        if c == 0 {
            break;
        }
        *dst = c as u8;
    }
    out.extend_from_slice(&name);
    out.extend_from_slice(&use_count.to_ne_bytes());
    debug_assert_eq!(out.len() - start, TENSOR_SIZE);
}

/// The graph message: `| device u32 | n_nodes u32 | node ids u64... |
/// n_tensors u32 | tensors... |`, each tensor after its sources and view
/// source. Fails naming a tensor the protocol cannot carry or whose memory
/// the worker does not hold.
///
/// # Safety
/// `nodes` are live tensors, as are their sources.
pub(crate) unsafe fn graph(
    device: u32,
    nodes: &[*mut sys::ggml_tensor],
    place: Placement<'_>,
) -> Result<Vec<u8>, String> {
    // Uses of each tensor as a node's source (ggml's `use_counts`).
    let mut uses: HashMap<*const sys::ggml_tensor, i32> = HashMap::new();
    for &n in nodes {
        // SAFETY: the caller's contract.
        let n = unsafe { &*n };
        for &s in n.src.iter().filter(|s| !s.is_null()) {
            *uses.entry(s.cast_const()).or_default() += 1;
        }
    }
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    for &n in nodes {
        // SAFETY: the caller's contract, for each tensor reached.
        unsafe { visit(n, &mut seen, &mut order)? };
    }
    let mut out = Vec::with_capacity(12 + nodes.len() * 8 + order.len() * TENSOR_SIZE);
    out.extend_from_slice(&device.to_ne_bytes());
    out.extend_from_slice(&(nodes.len() as u32).to_ne_bytes());
    for &n in nodes {
        out.extend_from_slice(&(n as u64).to_ne_bytes());
    }
    out.extend_from_slice(&(order.len() as u32).to_ne_bytes());
    for &t in &order {
        if place(t).is_none() {
            // SAFETY: reached from a node.
            let t = unsafe { &*t };
            return Err(format!(
                "tensor {:?} has no memory on this worker (data in another buffer or on an older connection)",
                name(t)
            ));
        }
        let count = uses.get(&t).copied().unwrap_or(0);
        // SAFETY: as above.
        unsafe { put_tensor(&mut out, t, place, count) };
    }
    Ok(out)
}

/// Depth-first, sources before the tensor (`add_tensor`).
///
/// # Safety
/// `t` is NULL or a live tensor whose sources are live.
unsafe fn visit(
    t: *const sys::ggml_tensor,
    seen: &mut HashSet<*const sys::ggml_tensor>,
    order: &mut Vec<*const sys::ggml_tensor>,
) -> Result<(), String> {
    if t.is_null() || !seen.insert(t) {
        return Ok(());
    }
    // SAFETY: the caller's contract.
    let tr = unsafe { &*t };
    if let Some(why) = unsendable(tr) {
        return Err(why);
    }
    for &s in &tr.src {
        // SAFETY: sources of a live tensor.
        unsafe { visit(s, seen, order)? };
    }
    // SAFETY: as above.
    unsafe { visit(tr.view_src, seen, order)? };
    order.push(t);
    Ok(())
}

/// FNV-1a over `data` (the worker's cache key for weights, `fnv_hash`).
pub(crate) fn fnv1a(data: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for &b in data {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_strides_past_32_bits_and_custom_ops_cannot_be_sent() {
        let small = sys::ggml_tensor {
            ne: [4, 2, 1, 1],
            nb: [4, 16, 32, 32],
            ..Default::default()
        };
        assert_eq!(unsendable(&small), None);
        let long = sys::ggml_tensor {
            ne: [1 << 32, 1, 1, 1],
            ..small
        };
        assert!(unsendable(&long).is_some_and(|w| w.contains("32 bits")));
        let strided = sys::ggml_tensor {
            nb: [4, 1 << 32, 1 << 32, 1 << 32],
            ..small
        };
        assert!(unsendable(&strided).is_some());
        let custom = sys::ggml_tensor {
            op: sys::GGML_OP_CUSTOM,
            ..small
        };
        assert!(unsendable(&custom).is_some_and(|w| w.contains("custom op")));
    }

    #[test]
    fn a_tensor_is_serialised_as_ggml_packs_it() {
        let mut t = sys::ggml_tensor {
            type_: sys::GGML_TYPE_F16,
            ne: [3, 5, 1, 1],
            nb: [2, 6, 30, 30],
            op: sys::GGML_OP_ADD,
            flags: 7,
            view_offs: 12,
            ..Default::default()
        };
        t.op_params[0] = -2;
        for (dst, &c) in t.name.iter_mut().zip(b"w.0") {
            *dst = c as std::ffi::c_char;
        }
        let mut out = Vec::new();
        // SAFETY: a live tensor on the stack, no sources.
        unsafe { put_tensor(&mut out, &t, &|_| Some((0xb0, 0xd0)), 3) };
        assert_eq!(out.len(), TENSOR_SIZE);
        let u64_at = |o: usize| u64::from_ne_bytes(out[o..o + 8].try_into().unwrap());
        let u32_at = |o: usize| u32::from_ne_bytes(out[o..o + 4].try_into().unwrap());
        assert_eq!(u64_at(0), &t as *const _ as u64); // id
        assert_eq!(u32_at(8), sys::GGML_TYPE_F16); // type
        assert_eq!(u64_at(12), 0xb0); // buffer
        assert_eq!((u32_at(20), u32_at(24)), (3, 5)); // ne
        assert_eq!((u32_at(36), u32_at(40)), (2, 6)); // nb
        assert_eq!(u32_at(52), sys::GGML_OP_ADD); // op
        assert_eq!(u32_at(56) as i32, -2); // op_params[0]
        assert_eq!(u32_at(120), 7); // flags
        assert_eq!(u64_at(124), 0); // src[0]
        assert_eq!(u64_at(204), 0); // view_src
        assert_eq!(u64_at(212), 12); // view_offs
        assert_eq!(u64_at(220), 0xd0); // data
        assert_eq!(&out[228..232], b"w.0\0"); // name
        assert_eq!(u32_at(292), 3); // use_count
    }
}
