//! Sequence-model ops against references written here: `ssm_conv`.

use anyhow::Result;
use ggml::ndarray::{ArrayD, IxDyn};
use ggml::{Context, Error, Type};

use crate::eval::{self, assert_close, Tol};

#[test]
fn mamba_convolution() -> Result<()> {
    // sx [n_seqs=2, d_inner=3, d_conv - 1 + n_t = 4 + 5 - 1]; c [d_inner, d_conv = 4].
    let (seqs, inner, conv, tokens) = (2, 3, 4, 5);
    let sx = eval::input(&[seqs, inner, conv - 1 + tokens], 131, 1.0);
    let c = eval::input(&[inner, conv], 132, 1.0);
    let ctx = Context::new(1 << 20)?;
    let y = ctx
        .tensor_from_array(&sx)?
        .ssm_conv(ctx.tensor_from_array(&c)?)?;
    let got = &eval::compute(&ctx, &[y])?[0];
    let want = ArrayD::from_shape_fn(IxDyn(&[seqs, tokens, inner]), |d| {
        let (s, t, i) = (d[0], d[1], d[2]);
        (0..conv).map(|k| sx[[s, i, t + k]] * c[[i, k]]).sum()
    });
    assert_close(
        got,
        &want,
        Tol {
            abs: 1e-5,
            rel: 1e-5,
        },
        "ssm_conv",
    )?;
    let short = ctx.new_tensor(Type::F32, &[2, 3, 2])?;
    let wide = ctx.new_tensor(Type::F32, &[3, 4])?;
    assert!(
        matches!(short.ssm_conv(wide), Err(Error::Op(_))),
        "fewer states than the window"
    );
    Ok(())
}
