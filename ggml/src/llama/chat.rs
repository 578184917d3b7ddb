//! Chat templates: [`apply_chat_template`] formats messages the way a model
//! was trained to read them, with llama.cpp's built-in formatters (it
//! recognises a model's Jinja template by name or by its markers; it is not
//! a Jinja engine).

use std::ffi::CString;

use ggml_sys as sys;

use super::error::Error;
use super::error::Result;

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Formats `messages` with `template` (a model's template, or the name of a
/// built-in one: `chatml`, `llama3`, ... see [`builtin_templates`]); with
/// `add_assistant`, ends with the start of the assistant's reply.
///
/// # Errors
/// [`Error::UnknownTemplate`] for a template llama.cpp does not know;
/// [`Error::InteriorNul`].
pub fn apply_chat_template(
    template: &str,
    messages: &[ChatMessage],
    add_assistant: bool,
) -> Result<String> {
    let nul = |what| move |_| Error::InteriorNul { what };
    let tmpl = CString::new(template).map_err(nul("the chat template"))?;
    let owned: Vec<(CString, CString)> = messages
        .iter()
        .map(|m| {
            Ok((
                CString::new(m.role.as_str())?,
                CString::new(m.content.as_str())?,
            ))
        })
        .collect::<Result<_, std::ffi::NulError>>()
        .map_err(nul("a chat message"))?;
    let raw: Vec<sys::llama_chat_message> = owned
        .iter()
        .map(|(r, c)| sys::llama_chat_message {
            role: r.as_ptr(),
            content: c.as_ptr(),
        })
        .collect();
    let total: usize = messages
        .iter()
        .map(|m| m.role.len() + m.content.len())
        .sum();
    let mut buf = vec![0u8; total.saturating_mul(2).saturating_add(256)];
    loop {
        // SAFETY: the messages' strings (`owned`) live through the call.
        let n = unsafe { super::raw::apply_chat_template(&tmpl, &raw, add_assistant, &mut buf) }?;
        if n < 0 {
            return Err(Error::UnknownTemplate);
        }
        if (n as usize) <= buf.len() {
            buf.truncate(n as usize);
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
        buf.resize(n as usize, 0);
    }
}

/// The names of llama.cpp's built-in chat templates.
pub fn builtin_templates() -> Vec<String> {
    super::raw::builtin_templates()
}
