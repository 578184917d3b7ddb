//! Bounds on a GBNF grammar, checked before llama.cpp parses it.
//!
//! llama.cpp's grammar code recurses: its parser once per level of
//! parenthesis nesting (about 450 bytes of stack each), its left-recursion
//! check once per rule on a chain of rule references (about 125 bytes
//! each), so a 200 KB grammar of nested parentheses or chained rules
//! overflows any thread's stack. It also copies the item before a
//! repetition once per repeat (`"..."{0,2000}`) with no bound, and a
//! repetition `{m,n}` with `n < m` makes it generate rules until memory
//! runs out. This scanner reads the grammar as llama.cpp's parser lexes it
//! (literals, character classes and token references skipped with their
//! escapes, comments) and bounds each of these before the parser runs.
//!
//! Grammars are still programs: some small ones take llama.cpp exponential
//! time to check or to advance (ambiguous alternatives of nested optional
//! rules). Run grammars from untrusted sources in a process you can stop.

use super::super::error::Error;

/// Deepest parenthesis nesting accepted (about 115 KB of parser stack).
pub const MAX_GRAMMAR_NESTING: usize = 256;
/// Most rules a grammar may define or generate (named rules, groups,
/// repetitions), which bounds the left-recursion check's depth (about
/// 0.5 MB of stack).
pub const MAX_GRAMMAR_RULES: usize = 4096;
/// Most grammar elements its repetitions may copy (llama.cpp copies the
/// item before `{m,n}` up to `n` times; 8 bytes each).
pub const MAX_GRAMMAR_ELEMENTS: usize = 1 << 22;

/// llama.cpp's most repetitions (`MAX_REPETITION_THRESHOLD`): above it, a
/// maximum means "unbounded" and a minimum is an error.
const REPETITION_THRESHOLD: u64 = 2000;

fn too_complex(what: &'static str, value: usize, limit: usize) -> Error {
    Error::GrammarLimit { what, value, limit }
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

/// Skips a literal or class body from `i` (after its opening character) to
/// just past `close`, escapes included.
fn skip_quoted(g: &[u8], mut i: usize, close: u8) -> usize {
    while i < g.len() && g[i] != close {
        i += if g[i] == b'\\' { 2 } else { 1 };
    }
    (i + 1).min(g.len())
}

/// An integer at `i` (after spaces and comments), and where it ends.
fn int_at(g: &[u8], i: usize) -> (Option<u64>, usize) {
    let i = skip_space(g, i);
    let end = i + g[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    let value = std::str::from_utf8(&g[i..end])
        .ok()
        .and_then(|s| s.parse().ok());
    (value, end)
}

fn skip_space(g: &[u8], mut i: usize) -> usize {
    while i < g.len() {
        match g[i] {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'#' => {
                while i < g.len() && g[i] != b'\n' && g[i] != b'\r' {
                    i += 1;
                }
            }
            _ => break,
        }
    }
    i
}

/// Checks `grammar` against the limits above.
pub(crate) fn check(grammar: &str) -> Result<(), Error> {
    let g = grammar.as_bytes();
    let (mut depth, mut rules, mut elements) = (0usize, 0usize, 0usize);
    // Elements of the last item (what a repetition copies), and the
    // starts of the open groups.
    let mut last = 1usize;
    let mut i = 0;
    while i < g.len() {
        let c = g[i];
        match c {
            b'"' | b'[' => {
                let end = skip_quoted(g, i + 1, if c == b'"' { b'"' } else { b']' });
                last = (end - i).max(1);
                i = end;
                continue;
            }
            b'<' | b'!' => {
                let end = g[i..]
                    .iter()
                    .position(|&b| b == b'>')
                    .map_or(g.len(), |p| i + p + 1);
                last = 1;
                i = end;
                continue;
            }
            b'#' => {
                i = skip_space(g, i);
                continue;
            }
            b'(' => {
                depth += 1;
                if depth > MAX_GRAMMAR_NESTING {
                    return Err(too_complex(
                        "parenthesis nesting",
                        depth,
                        MAX_GRAMMAR_NESTING,
                    ));
                }
                rules += 1;
            }
            b')' => {
                depth = depth.saturating_sub(1);
                last = 1; // the group's reference
            }
            b'*' | b'+' | b'?' => {
                rules += 1;
                elements = elements.saturating_add(last.saturating_mul(2));
            }
            b'{' => {
                let (min, after) = int_at(g, i + 1);
                let mut j = skip_space(g, after);
                let max = match g.get(j) {
                    Some(b',') => {
                        let (max, after) = int_at(g, j + 1);
                        j = after;
                        max.unwrap_or(u64::MAX)
                    }
                    _ => min.unwrap_or(0),
                };
                let min = min.unwrap_or(0);
                if max < min {
                    // llama.cpp's count of optional copies wraps around.
                    return Err(Error::InvalidParams(format!(
                        "grammar repetition {{{min},{max}}}: the maximum is below the minimum"
                    )));
                }
                let max = if max > REPETITION_THRESHOLD {
                    u64::MAX
                } else {
                    max
                };
                let copies = if max == u64::MAX {
                    rules += 1;
                    min + 1
                } else {
                    rules = rules.saturating_add((max - min) as usize);
                    max
                };
                elements = elements.saturating_add(last.saturating_mul(copies as usize));
                i = j;
            }
            _ if is_word(c) => {
                let end = i + g[i..].iter().take_while(|&&b| is_word(b)).count();
                rules += 1; // a name: a rule, defined or referenced
                last = 1;
                i = end;
                continue;
            }
            _ => {}
        }
        if rules > MAX_GRAMMAR_RULES {
            return Err(too_complex(
                "rules (named, groups and repetitions)",
                rules,
                MAX_GRAMMAR_RULES,
            ));
        }
        if elements > MAX_GRAMMAR_ELEMENTS {
            return Err(too_complex(
                "elements copied by repetitions",
                elements,
                MAX_GRAMMAR_ELEMENTS,
            ));
        }
        i += 1;
    }
    if rules > MAX_GRAMMAR_RULES {
        return Err(too_complex(
            "rules (named, groups and repetitions)",
            rules,
            MAX_GRAMMAR_RULES,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_grammars_pass() {
        let json = r#"
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws ::= | " " | "\n" [ \t]{0,20} # comment ( with a paren
"#;
        check(json).unwrap();
        check(r#"root ::= "a"{0,2000} "b"{0,100}"#).unwrap();
    }

    #[test]
    fn deep_and_long_grammars_are_refused() {
        let deep = format!("root ::= {}\"a\"{}", "(".repeat(300), ")".repeat(300));
        assert!(matches!(check(&deep), Err(Error::GrammarLimit { .. })));
        let chain: String = (0..5000)
            .map(|i| format!("r{i} ::= r{}\n", i + 1))
            .collect();
        assert!(matches!(check(&chain), Err(Error::GrammarLimit { .. })));
        let copies = format!("root ::= \"{}\"{{0,2000}}", "x".repeat(10_000));
        assert!(matches!(check(&copies), Err(Error::GrammarLimit { .. })));
        assert!(matches!(
            check(r#"root ::= "a"{5,2}"#),
            Err(Error::InvalidParams(_))
        ));
        // Parentheses inside literals, classes and comments do not count.
        let quoted = format!("root ::= \"{0}\" [{0}] # {0}\n", "(".repeat(1000));
        check(&quoted).unwrap();
    }
}
