//! Expands `${VAR}` and `${VAR:-default}` references in configuration strings; pure.
//!
//! Interpolation happens per string value after TOML parsing, never on the raw file
//! text, so an environment value can't inject TOML syntax and every error keeps the
//! position of the value it came from.

/// A problem found while expanding one string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolateError {
    /// `${NAME}` names a variable that is not set and has no `:-default`.
    Unset(String),
    /// `${` without a closing `}`, or an empty or malformed name.
    Malformed(String),
}

impl std::fmt::Display for InterpolateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unset(name) => write!(
                f,
                "environment variable {name} is not set; export it, or write ${{{name}:-default}} to give a default"
            ),
            Self::Malformed(text) => write!(
                f,
                "malformed variable reference `{text}`; write ${{NAME}} or ${{NAME:-default}} (use $$ for a literal $)"
            ),
        }
    }
}

/// Expands every `${NAME}` / `${NAME:-default}` in `input` using `lookup`; the
/// default applies when the variable is unset or empty, as in the shell.
/// `$$` stands for a literal `$`; a `$` not followed by `{` or `$` is kept as is.
pub fn expand(
    input: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, InterpolateError> {
    if !input.contains('$') {
        return Ok(input.to_owned());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let close = body
                .find('}')
                .ok_or_else(|| InterpolateError::Malformed(rest[at..].to_owned()))?;
            let inner = &body[..close];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            if !is_valid_name(name) {
                return Err(InterpolateError::Malformed(format!("${{{inner}}}")));
            }
            // As in the shell, `:-default` applies when the variable is unset or empty.
            let value = match (lookup(name), default) {
                (Some(v), Some(d)) if v.is_empty() => d.to_owned(),
                (Some(v), _) => v,
                (None, Some(d)) => d.to_owned(),
                (None, None) => return Err(InterpolateError::Unset(name.to_owned())),
            };
            out.push_str(&value);
            rest = &body[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Expands against the process environment.
pub fn expand_env(input: &str) -> Result<String, InterpolateError> {
    expand(input, |name| std::env::var(name).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db.internal".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(expand("no variables", env).unwrap(), "no variables");
    }

    #[test]
    fn expands_set_variables_anywhere() {
        assert_eq!(
            expand("postgres://${HOST}:5432/${HOST}", env).unwrap(),
            "postgres://db.internal:5432/db.internal"
        );
    }

    #[test]
    fn default_applies_only_when_unset() {
        assert_eq!(expand("${PORT:-5432}", env).unwrap(), "5432");
        assert_eq!(expand("${HOST:-x}", env).unwrap(), "db.internal");
        assert_eq!(expand("${EMPTY:-x}", env).unwrap(), "x");
        assert_eq!(expand("${EMPTY}", env).unwrap(), "");
        assert_eq!(expand("${PORT:-}", env).unwrap(), "");
    }

    #[test]
    fn unset_variable_is_named_in_the_error() {
        let err = expand("pw=${DB_PASSWORD}", env).unwrap_err();
        assert_eq!(err, InterpolateError::Unset("DB_PASSWORD".into()));
        assert!(err.to_string().contains("DB_PASSWORD is not set"));
    }

    #[test]
    fn dollar_escapes_and_lone_dollars() {
        assert_eq!(expand("cost $$5 and $x", env).unwrap(), "cost $5 and $x");
        assert_eq!(expand("$${HOST}", env).unwrap(), "${HOST}");
        assert_eq!(expand("trailing $", env).unwrap(), "trailing $");
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(matches!(
            expand("${HOST", env),
            Err(InterpolateError::Malformed(_))
        ));
        assert!(matches!(
            expand("${}", env),
            Err(InterpolateError::Malformed(_))
        ));
        assert!(matches!(
            expand("${1X}", env),
            Err(InterpolateError::Malformed(_))
        ));
    }
}
