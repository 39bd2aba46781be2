//! Row filters (`filter`, `snapshot_filter`) are user SQL that walcast places inside
//! `WHERE ( … )` of a publication or a COPY query; this checks, without a database, that
//! the text cannot escape those parentheses.

/// Structural check of a user SQL condition: it must stay one expression inside the
/// `WHERE ( … )` walcast places it in (a publication's row filter, a snapshot's COPY
/// query), whatever the text. It is lexed as PostgreSQL lexes it: `'…'` strings with
/// `''`, `E'…'` strings with backslash escapes, `"…"` identifiers and `$tag$…$tag$`
/// strings; outside them parentheses must balance without going below zero, and
/// comments and `;` are refused (a comment can hide a parenthesis from a reader and a
/// `;` ends the command). A backslash in a plain `'…'` string is refused too: its
/// meaning depends on `standard_conforming_strings`. PostgreSQL does the real parsing
/// (`walcast check` prepares the condition); this keeps the text from escaping.
pub(super) fn check_sql_expression(text: &str) -> Result<(), &'static str> {
    let bytes = text.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
    let mut depth: i32 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let token_start = i == 0 || !is_ident(bytes[i - 1]);
        match c {
            b'\'' => {
                // E'…' (or e'…'): the `E` starts a token of its own.
                let escapes = i > 0
                    && matches!(bytes[i - 1], b'e' | b'E')
                    && (i == 1 || !is_ident(bytes[i - 2]));
                i = skip_string(bytes, i + 1, escapes)?;
                continue;
            }
            b'"' => {
                i = skip_quoted(bytes, i + 1, b'"')
                    .ok_or("has an unterminated quoted identifier")?;
                continue;
            }
            b'$' if token_start => {
                if let Some(tag_end) = dollar_tag_end(bytes, i) {
                    let tag = &bytes[i..=tag_end];
                    let body = &bytes[tag_end + 1..];
                    let close = body
                        .windows(tag.len())
                        .position(|w| w == tag)
                        .ok_or("has an unterminated $-quoted string")?;
                    i = tag_end + 1 + close + tag.len();
                    continue;
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => return Err("contains a comment (`--`)"),
            b'/' if bytes.get(i + 1) == Some(&b'*') => return Err("contains a comment (`/*`)"),
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("has a `)` without its `(`");
                }
            }
            b';' => return Err("contains `;`"),
            _ => {}
        }
        i += 1;
    }
    if depth != 0 {
        return Err("has a `(` without its `)`");
    }
    Ok(())
}

/// Skips a `'…'` string body starting at `at`; returns the index after its closing quote.
fn skip_string(bytes: &[u8], mut at: usize, escapes: bool) -> Result<usize, &'static str> {
    while at < bytes.len() {
        match bytes[at] {
            b'\\' if escapes => at += 2,
            b'\\' => {
                return Err("has a backslash in a '…' string (its meaning depends on standard_conforming_strings); write it as an E'…' string")
            }
            b'\'' if bytes.get(at + 1) == Some(&b'\'') => at += 2,
            b'\'' => return Ok(at + 1),
            _ => at += 1,
        }
    }
    Err("has an unterminated quote")
}

/// Skips a quoted body (doubled `quote` inside) starting at `at`; the index after it.
fn skip_quoted(bytes: &[u8], mut at: usize, quote: u8) -> Option<usize> {
    while at < bytes.len() {
        if bytes[at] == quote {
            if bytes.get(at + 1) == Some(&quote) {
                at += 2;
                continue;
            }
            return Some(at + 1);
        }
        at += 1;
    }
    None
}

/// Where a dollar-quote opening tag (`$$` or `$tag$`) starting at `at` ends (the
/// index of its second `$`); `None` for anything else (e.g. a `$1` parameter).
fn dollar_tag_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    if bytes.get(i).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    while let Some(&b) = bytes.get(i) {
        if b == b'$' {
            return Some(i);
        }
        if !(b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80) {
            return None;
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::check_sql_expression;

    #[test]
    fn sql_expressions_are_checked_for_escapes() {
        assert!(check_sql_expression("status <> 'draft' and (a > 1 or b)").is_ok());
        assert!(check_sql_expression("name = 'it''s (fine'").is_ok());
        assert!(check_sql_expression("\"we;ird\" = 1").is_ok());
        assert!(check_sql_expression("true); drop table x").is_err());
        assert!(check_sql_expression("true), public.x WHERE (true").is_err());
        assert!(check_sql_expression("(a = 1").is_err());
        assert!(check_sql_expression("a = 'open").is_err());
    }

    #[test]
    fn comments_and_quotes_cannot_hide_an_escape() {
        // The review's payload: comments hide a parenthesis, and the text publishes
        // another table.
        let escape = "/* ( */ true) , public.secrets WHERE (true /* ) */";
        assert!(check_sql_expression(escape).is_err(), "{escape}");
        for payload in [
            "true -- )",
            "true) , public.secrets WHERE (true --",
            "a = 1 /* */",
            // An E'' string's escaped quote does not end it, and what follows its end
            // is outside.
            r"a = E'\'' ) , public.secrets WHERE (true",
            r"a = E'it\'s' ) , public.secrets WHERE (true",
            // A $-quoted string hides nothing: the text after it is checked.
            "a = $$ ( $$ ) , public.secrets WHERE ( true",
            "a = $x$ ( $x$) , public.secrets WHERE (true",
            "a = $x$ never closed",
            // Plain strings with a backslash mean different things per setting.
            r"a = '\' ) , public.secrets WHERE (true --'",
            r"a = 'x\'",
            "\"never closed",
            "true; select 1",
        ] {
            assert!(check_sql_expression(payload).is_err(), "{payload}");
        }
        for fine in [
            "a = $$ ) ; -- /* $$",
            "a = $tag$ it's ( $tag$",
            r"a = E'it\'s (' and b",
            r"a = E'\' ) , public.secrets WHERE ( true'",
            r"a = e'\\' and (b or c)",
            "name = 'it''s ( -- not a comment'",
            "\"odd)\"\"name\" = 1",
            "a - -1 > 0 and b / 2 < 3",
            "price$ > 0 and x = $1",
        ] {
            assert!(check_sql_expression(fine).is_ok(), "{fine}");
        }
    }
}
