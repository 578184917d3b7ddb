//! [`Batch`]: tokens to decode, each with its position, its sequences and
//! whether its logits are wanted. Plain Rust data, independent of any
//! context; checked against the context when decoded.

use ggml_sys as sys;

use super::error::Error;
use super::error::Result;
use super::vocab::Token;

/// Tokens for [`Context::decode`](super::Context::decode): several
/// sequences at once, explicit positions, per-token "want logits" flags.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    tokens: Vec<Token>,
    pos: Vec<i32>,
    /// Where each token's sequence ids start in `seq_ids` (one more entry
    /// than tokens).
    seq_start: Vec<usize>,
    seq_ids: Vec<i32>,
    n_seq: Vec<i32>,
    logits: Vec<i8>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch {
            seq_start: vec![0],
            ..Default::default()
        }
    }

    /// A batch of `tokens` for sequence 0 from position 0, logits for the
    /// last token only: a prompt.
    ///
    /// # Errors
    /// As [`Batch::add`].
    pub fn from_prompt(tokens: &[Token]) -> Result<Self> {
        let mut b = Batch::new();
        b.add_sequence(tokens, 0, 0, false)?;
        Ok(b)
    }

    /// Adds `token` at position `pos` of the sequences `seqs`, with its
    /// logits (or embeddings) wanted when `logits`.
    ///
    /// # Errors
    /// [`Error::InvalidBatch`] for a negative position, no sequence, a
    /// sequence twice, or more than `i32::MAX` tokens.
    pub fn add(&mut self, token: Token, pos: i32, seqs: &[i32], logits: bool) -> Result<()> {
        if pos < 0 {
            return Err(Error::InvalidBatch(format!("negative position {pos}")));
        }
        if seqs.is_empty() {
            return Err(Error::InvalidBatch("a token without a sequence".into()));
        }
        if seqs.iter().enumerate().any(|(i, s)| seqs[..i].contains(s)) {
            return Err(Error::InvalidBatch(format!("sequence ids {seqs:?} repeat")));
        }
        if self.tokens.len() >= i32::MAX as usize || seqs.len() > i32::MAX as usize {
            return Err(Error::InvalidBatch("too many tokens".into()));
        }
        self.tokens.push(token);
        self.pos.push(pos);
        self.seq_ids.extend_from_slice(seqs);
        self.seq_start.push(self.seq_ids.len());
        self.n_seq.push(seqs.len() as i32);
        self.logits.push(i8::from(logits));
        Ok(())
    }

    /// Adds `tokens` to sequence `seq` at positions `first_pos..`, logits
    /// for every token when `all_logits`, else for the last one.
    ///
    /// # Errors
    /// As [`Batch::add`].
    pub fn add_sequence(
        &mut self,
        tokens: &[Token],
        first_pos: i32,
        seq: i32,
        all_logits: bool,
    ) -> Result<()> {
        for (i, &t) in tokens.iter().enumerate() {
            let pos = i32::try_from(i)
                .ok()
                .and_then(|i| first_pos.checked_add(i))
                .ok_or_else(|| Error::InvalidBatch("positions beyond i32::MAX".into()))?;
            self.add(t, pos, &[seq], all_logits || i + 1 == tokens.len())?;
        }
        Ok(())
    }

    /// Empties the batch (keeping its memory).
    pub fn clear(&mut self) {
        self.tokens.clear();
        self.pos.clear();
        self.seq_start.truncate(1);
        self.seq_ids.clear();
        self.n_seq.clear();
        self.logits.clear();
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether it has no tokens.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The tokens.
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// The positions.
    pub fn positions(&self) -> &[i32] {
        &self.pos
    }

    /// The sequences of token `i`.
    pub fn seqs(&self, i: usize) -> &[i32] {
        &self.seq_ids[self.seq_start[i]..self.seq_start[i + 1]]
    }

    /// Whether token `i` wants its logits.
    pub fn wants_logits(&self, i: usize) -> bool {
        self.logits[i] != 0
    }

    /// llama.cpp's view of the batch; `seq_ptrs` receives one pointer per
    /// token into `seq_ids` and must outlive the view's use.
    pub(crate) fn raw(&self, seq_ptrs: &mut Vec<*mut i32>) -> sys::llama_batch {
        seq_ptrs.clear();
        let base = self.seq_ids.as_ptr();
        // SAFETY (of the casts below): llama_decode only reads through the
        // batch's pointers; each seq pointer is inside `seq_ids`.
        seq_ptrs.extend(
            self.seq_start[..self.tokens.len()]
                .iter()
                .map(|&s| base.wrapping_add(s).cast_mut()),
        );
        sys::llama_batch {
            n_tokens: self.tokens.len() as i32,
            token: self.tokens.as_ptr().cast_mut(),
            embd: std::ptr::null_mut(),
            pos: self.pos.as_ptr().cast_mut(),
            n_seq_id: self.n_seq.as_ptr().cast_mut(),
            seq_id: seq_ptrs.as_mut_ptr(),
            logits: self.logits.as_ptr().cast_mut(),
        }
    }
}
