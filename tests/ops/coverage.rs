//! The coverage report `docs/ops.md`: written from the pinned `ggml.h` and
//! `ggml::ops::catalog()`. Fails when the file is stale (rerun with
//! `GGML_UPDATE_DOCS=1` to rewrite it), when a declaration names a builder
//! the header lacks, or when coverage falls below its floor.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::Path;

use anyhow::{bail, ensure, Context as _, Result};

/// Coverage may only grow: the floors of what the safe API reaches.
const FLOOR_OPS: usize = 96;
const FLOOR_BUILDERS: usize = 226;

/// The targets, quoted in the report.
const TARGET_BUILDERS: usize = 200;

/// Functions returning a tensor that make or find tensors rather than ops.
const NOT_BUILDERS: &[&str] = &[
    "ggml_new_tensor",
    "ggml_new_tensor_1d",
    "ggml_new_tensor_2d",
    "ggml_new_tensor_3d",
    "ggml_new_tensor_4d",
    "ggml_dup_tensor",
    "ggml_view_tensor",
    "ggml_get_first_tensor",
    "ggml_get_next_tensor",
    "ggml_get_tensor",
    "ggml_set_name",
    "ggml_format_name",
    "ggml_graph_node",
    "ggml_graph_get_tensor",
    "ggml_graph_get_grad",
    "ggml_graph_get_grad_acc",
    "ggml_build_forward_select",
    "ggml_set_zero",
    "ggml_set_i32",
    "ggml_set_f32",
    "ggml_new_i32",
    "ggml_new_f32",
    "ggml_new_buffer",
];

/// Builders left out on purpose, with the reason.
const EXCLUDED: &[(&str, &str)] = &[
    ("ggml_dup_inplace", "copies a tensor onto itself (a memcpy of a buffer to itself, undefined in C); nothing to compute"),
    ("ggml_flash_attn_back", "aborts unconditionally in the pinned ggml (\"TODO: adapt to ggml_flash_attn_ext() changes\")"),
    ("ggml_opt_step_adamw", "an optimizer step: the training work item"),
    ("ggml_opt_step_sgd", "an optimizer step: the training work item"),
    ("ggml_add1", "deprecated by ggml (use add)"),
    ("ggml_add1_inplace", "deprecated by ggml (use add)"),
    ("ggml_rope_custom", "deprecated by ggml (use rope_ext)"),
    ("ggml_rope_custom_inplace", "deprecated by ggml (use rope_ext)"),
    ("ggml_upscale_ext", "deprecated by ggml (use interpolate)"),
];

/// Ops left out on purpose (every builder of theirs excluded above).
const EXCLUDED_OPS: &[(&str, &str)] = &[
    ("ADD1", "deprecated by ggml (use add)"),
    (
        "FLASH_ATTN_BACK",
        "its builder aborts unconditionally in the pinned ggml",
    ),
    (
        "OPT_STEP_ADAMW",
        "an optimizer step: the training work item",
    ),
    ("OPT_STEP_SGD", "an optimizer step: the training work item"),
];

fn header() -> Result<String> {
    let dir = option_env!("GGML_INCLUDE_DIR")
        .context("GGML_INCLUDE_DIR unset (the root build script sets it)")?;
    let path = Path::new(dir).join("ggml.h");
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// The members of `enum NAME { ... }` with prefix `prefix`, but `_COUNT`.
fn enum_members(h: &str, name: &str, prefix: &str) -> Result<Vec<String>> {
    let start = h
        .find(&format!("enum {name} {{"))
        .with_context(|| format!("enum {name}"))?;
    let body = &h[start..start + h[start..].find('}').context("end of enum")?];
    Ok(body
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with(prefix) && !w.ends_with("_COUNT"))
        .map(|w| w[prefix.len()..].to_string())
        .collect())
}

/// Every `struct ggml_tensor * ggml_x(` of the header, with whether it is
/// deprecated.
fn builders(h: &str) -> BTreeMap<String, bool> {
    let mut out = BTreeMap::new();
    let compact: String = h.split_whitespace().collect::<Vec<_>>().join(" ");
    let pat = "struct ggml_tensor * ggml_";
    let mut rest = compact.as_str();
    while let Some(i) = rest.find(pat) {
        let before = &rest[..i];
        let name_start = i + pat.len() - "ggml_".len();
        let after = &rest[name_start..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..end];
        let is_decl = after[end..].trim_start().starts_with('(');
        if is_decl && !NOT_BUILDERS.contains(&name) {
            let deprecated = before.trim_end().ends_with("GGML_DEPRECATED( GGML_API")
                || before.trim_end().ends_with("GGML_DEPRECATED(GGML_API");
            out.insert(name.to_string(), deprecated);
        }
        rest = &rest[name_start + end..];
    }
    out
}

/// The report's text.
fn report() -> Result<String> {
    let h = header()?;
    let ops = enum_members(&h, "ggml_op", "GGML_OP_")?;
    let unary = enum_members(&h, "ggml_unary_op", "GGML_UNARY_OP_")?;
    let glu = enum_members(&h, "ggml_glu_op", "GGML_GLU_OP_")?;
    let all = builders(&h);
    let excluded: BTreeMap<&str, &str> = EXCLUDED.iter().copied().collect();

    // What the declarations reach.
    let mut by_builder: BTreeMap<&str, &str> = BTreeMap::new();
    let mut reached_ops = BTreeSet::new();
    let mut reached_unary = BTreeSet::new();
    let mut reached_glu = BTreeSet::new();
    let mut backward = BTreeSet::new();
    for d in ggml::ops::catalog() {
        for b in d.builders() {
            ensure!(
                all.contains_key(*b),
                "{} names {b}, which ggml.h does not declare",
                d.name()
            );
            by_builder.entry(b).or_insert(d.name());
        }
        let op = d.op() as usize;
        reached_ops.insert(op);
        match d.sub() {
            ggml::ops::Sub::Unary(u) => {
                reached_unary.insert(u as usize);
            }
            ggml::ops::Sub::Glu(g) => {
                reached_glu.insert(g as usize);
            }
            ggml::ops::Sub::None => {}
        }
        if d.has_backward() {
            backward.insert(d.name());
        }
    }
    // The generic unary/glu entries reach every sub-op.
    let op_count = ops.len();
    let reached = |set: &BTreeSet<usize>, i: usize| set.contains(&i);
    let n_ops = (1..op_count).filter(|&i| reached(&reached_ops, i)).count(); // NONE is not an op
    let n_unary = (0..unary.len())
        .filter(|&i| reached(&reached_unary, i))
        .count();
    let n_glu = (0..glu.len()).filter(|&i| reached(&reached_glu, i)).count();
    let n_builders = all
        .keys()
        .filter(|b| by_builder.contains_key(b.as_str()))
        .count();
    ensure!(
        n_ops >= FLOOR_OPS,
        "ops reached fell to {n_ops} (floor {FLOOR_OPS})"
    );
    ensure!(
        n_builders >= FLOOR_BUILDERS,
        "builders reached fell to {n_builders} (floor {FLOOR_BUILDERS})"
    );

    let mut s = String::new();
    writeln!(s, "# ggml ops in the safe API")?;
    writeln!(s)?;
    writeln!(
        s,
        "Generated by `tests/ops/coverage.rs` from the pinned `ggml.h` and `ggml::ops::catalog()`"
    )?;
    writeln!(s, "(`GGML_UPDATE_DOCS=1 cargo test --test ops coverage` rewrites it; the test fails when it is stale).")?;
    writeln!(s)?;
    writeln!(s, "| | reached | of |")?;
    writeln!(s, "|---|---|---|")?;
    writeln!(
        s,
        "| `GGML_OP_*` (but `NONE`) | {n_ops} | {} ({} excluded) |",
        op_count - 1,
        EXCLUDED_OPS.len()
    )?;
    writeln!(s, "| `GGML_UNARY_OP_*` | {n_unary} | {} |", unary.len())?;
    writeln!(s, "| `GGML_GLU_OP_*` | {n_glu} | {} |", glu.len())?;
    writeln!(
        s,
        "| builder functions | {n_builders} | {} (target {TARGET_BUILDERS}) |",
        all.len()
    )?;
    writeln!(s)?;
    writeln!(s, "Each op is declared once in `ggml/src/ops/` (`ggml::ops::Decl`): its builders, op and sub-op, operand count,")?;
    writeln!(s, "CPU kernel contract and backward rule. The fuzzer generates calls of every declared op from the same table.")?;
    writeln!(s)?;
    writeln!(s, "## Builders")?;
    writeln!(s)?;
    writeln!(s, "| ggml builder | safe API | note |")?;
    writeln!(s, "|---|---|---|")?;
    for (b, &deprecated) in &all {
        let (api, note) = match by_builder.get(b.as_str()) {
            Some(name) => (
                format!("`{name}`"),
                if backward.contains(name) {
                    "backward rule in ggml".to_string()
                } else {
                    String::new()
                },
            ),
            None => match excluded.get(b.as_str()) {
                Some(reason) => ("excluded".to_string(), (*reason).to_string()),
                None if deprecated => ("excluded".to_string(), "deprecated by ggml".to_string()),
                None => ("not yet".to_string(), String::new()),
            },
        };
        writeln!(s, "| `{b}` | {api} | {note} |")?;
    }
    writeln!(s)?;
    writeln!(s, "## Ops")?;
    writeln!(s)?;
    writeln!(s, "| `GGML_OP_*` | reached |")?;
    writeln!(s, "|---|---|")?;
    let excluded_ops: BTreeMap<&str, &str> = EXCLUDED_OPS.iter().copied().collect();
    for (i, op) in ops.iter().enumerate().skip(1) {
        let state = if reached(&reached_ops, i) {
            "yes".to_string()
        } else if let Some(reason) = excluded_ops.get(op.as_str()) {
            format!("excluded: {reason}")
        } else {
            "not yet".to_string()
        };
        writeln!(s, "| `{op}` | {state} |")?;
    }
    writeln!(s)?;
    writeln!(s, "## Unary and GLU sub-ops")?;
    writeln!(s)?;
    writeln!(s, "| sub-op | reached |")?;
    writeln!(s, "|---|---|")?;
    for (i, u) in unary.iter().enumerate() {
        writeln!(
            s,
            "| `GGML_UNARY_OP_{u}` | {} |",
            if reached(&reached_unary, i) {
                "yes"
            } else {
                "not yet"
            }
        )?;
    }
    for (i, g) in glu.iter().enumerate() {
        writeln!(
            s,
            "| `GGML_GLU_OP_{g}` | {} |",
            if reached(&reached_glu, i) {
                "yes"
            } else {
                "not yet"
            }
        )?;
    }
    Ok(s)
}

#[test]
fn the_coverage_report_is_current() -> Result<()> {
    let text = report()?;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ops.md");
    if std::env::var("GGML_UPDATE_DOCS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &text)?;
        return Ok(());
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current != text {
        bail!("docs/ops.md is stale: rerun with GGML_UPDATE_DOCS=1 cargo test --test ops coverage");
    }
    Ok(())
}

/// The fuzzer picks at most 8 operands per op (`fuzz/src/program.rs`).
#[test]
fn no_op_takes_more_operands_than_the_fuzzer_picks() {
    for decl in ggml::ops::catalog() {
        assert!(decl.arity() <= 8, "{} takes {}", decl.name(), decl.arity());
    }
}
