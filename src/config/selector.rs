//! Table names and patterns from `[tables."…"]` keys: parsing and matching; pure.
//!
//! A key is `schema.table`. Each part is either bare, where `*` matches any run of
//! characters and `?` one character, or double-quoted (`"My.Schema"."Orders"`), which
//! is taken literally, dots and stars included, with `""` for a quote. Names are
//! compared exactly as the catalog stores them (PostgreSQL folds unquoted identifiers
//! to lower case when a table is created, so that is usually what to write).

use std::fmt;

/// One part of a selector: a literal name or a glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamePattern {
    Exact(String),
    Glob(String),
}

impl NamePattern {
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(exact) => exact == name,
            Self::Glob(glob) => glob_matches(glob.as_bytes(), name.as_bytes()),
        }
    }

    pub fn is_exact(&self) -> bool {
        matches!(self, Self::Exact(_))
    }
}

/// `schema.table`, either part possibly a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSelector {
    pub schema: NamePattern,
    pub table: NamePattern,
}

impl TableSelector {
    /// Parses a `[tables."…"]` key.
    pub fn parse(key: &str) -> Result<Self, String> {
        let hint = "write it as schema.table, e.g. \"public.orders\" or \"public.*\"";
        let (schema, rest) = parse_part(key).map_err(|e| format!("table `{key}`: {e}; {hint}"))?;
        let rest = rest
            .strip_prefix('.')
            .ok_or_else(|| format!("table `{key}` has no schema; {hint}"))?;
        let (table, rest) = parse_part(rest).map_err(|e| format!("table `{key}`: {e}; {hint}"))?;
        if !rest.is_empty() {
            return Err(format!(
                "table `{key}` has more than two parts; {hint} (quote a name that contains a dot)"
            ));
        }
        Ok(Self { schema, table })
    }

    pub fn is_exact(&self) -> bool {
        self.schema.is_exact() && self.table.is_exact()
    }

    pub fn matches(&self, schema: &str, table: &str) -> bool {
        self.schema.matches(schema) && self.table.matches(table)
    }
}

impl fmt::Display for TableSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn part(f: &mut fmt::Formatter<'_>, p: &NamePattern) -> fmt::Result {
            match p {
                NamePattern::Glob(g) => f.write_str(g),
                NamePattern::Exact(e) if is_plain(e) => f.write_str(e),
                NamePattern::Exact(e) => write!(f, "\"{}\"", e.replace('"', "\"\"")),
            }
        }
        part(f, &self.schema)?;
        f.write_str(".")?;
        part(f, &self.table)
    }
}

fn is_plain(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Parses one part up to an unquoted `.` or the end; returns it and the unparsed rest.
fn parse_part(input: &str) -> Result<(NamePattern, &str), String> {
    if let Some(quoted) = input.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if quoted[i + 1..].starts_with('"') {
                    name.push('"');
                    chars.next();
                } else {
                    if name.is_empty() {
                        return Err("a quoted name is empty".into());
                    }
                    return Ok((NamePattern::Exact(name), &quoted[i + 1..]));
                }
            } else {
                name.push(c);
            }
        }
        return Err("a quoted name has no closing quote".into());
    }
    let end = input.find('.').unwrap_or(input.len());
    let part = &input[..end];
    if part.is_empty() {
        return Err("a name is empty".into());
    }
    if part.contains('"') {
        return Err(format!("`{part}` has a quote inside; quote the whole name"));
    }
    if part.chars().any(char::is_whitespace) {
        return Err(format!("`{part}` contains whitespace; quote the name"));
    }
    let pattern = if part.contains(['*', '?']) {
        NamePattern::Glob(part.to_owned())
    } else {
        NamePattern::Exact(part.to_owned())
    };
    Ok((pattern, &input[end..]))
}

/// Iterative glob match with `*` and `?` over bytes (names are compared bytewise;
/// `?` matches one byte, which is one character for ASCII names).
fn glob_matches(glob: &[u8], name: &[u8]) -> bool {
    let (mut g, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if g < glob.len() && (glob[g] == b'?' || glob[g] == name[n]) {
            g += 1;
            n += 1;
        } else if g < glob.len() && glob[g] == b'*' {
            star = Some((g, n));
            g += 1;
        } else if let Some((sg, sn)) = star {
            g = sg + 1;
            n = sn + 1;
            star = Some((sg, sn + 1));
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_quoted_names() {
        let s = TableSelector::parse("public.orders").unwrap();
        assert_eq!(s.schema, NamePattern::Exact("public".into()));
        assert_eq!(s.table, NamePattern::Exact("orders".into()));
        assert!(s.is_exact());

        let q = TableSelector::parse(r#""My.Schema"."Or""ders""#).unwrap();
        assert_eq!(q.schema, NamePattern::Exact("My.Schema".into()));
        assert_eq!(q.table, NamePattern::Exact("Or\"ders".into()));
        assert_eq!(q.to_string(), r#""My.Schema"."Or""ders""#);

        let star = TableSelector::parse(r#"public."*""#).unwrap();
        assert_eq!(star.table, NamePattern::Exact("*".into()));
    }

    #[test]
    fn patterns_match_like_globs() {
        let s = TableSelector::parse("public.order*").unwrap();
        assert!(!s.is_exact());
        assert!(s.matches("public", "orders"));
        assert!(s.matches("public", "order"));
        assert!(!s.matches("public", "customers"));
        assert!(!s.matches("sales", "orders"));
        let any = TableSelector::parse("*.*").unwrap();
        assert!(any.matches("x", "y"));
        let q = TableSelector::parse("s.t?_*x").unwrap();
        assert!(q.matches("s", "ta_x"));
        assert!(q.matches("s", "tb_abcx"));
        assert!(!q.matches("s", "t_x"));
    }

    #[test]
    fn rejects_malformed_keys_with_a_hint() {
        for bad in [
            "orders",
            "a.b.c",
            ".x",
            "x.",
            "\"unterminated.x",
            "a b.c",
            "\"\".x",
        ] {
            let err = TableSelector::parse(bad).unwrap_err();
            assert!(err.contains("schema.table"), "{bad}: {err}");
        }
    }
}
