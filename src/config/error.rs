//! Configuration errors that point at the file, line and column to fix.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A place in a connector file, 1-based like editors show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// Turns a byte span of `text` into a line/column location; an empty 0..0 span
    /// (a default that was never written) points at the file's first line.
    pub fn from_span(file: &Path, text: &str, span: &Range<usize>) -> Self {
        let start = span.start.min(text.len());
        let before = &text[..floor_char_boundary(text, start)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Self {
            file: file.to_owned(),
            line,
            column,
        }
    }
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Why a connector file (or folder of them) could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file or folder could not be read.
    #[error("{}: {message}", path.display())]
    Unreadable { path: PathBuf, message: String },
    /// The TOML is malformed or a value has the wrong type or name.
    #[error("{location}: {message}")]
    Invalid { location: Location, message: String },
}

impl ConfigError {
    pub fn unreadable(path: &Path, message: impl Into<String>) -> Self {
        Self::Unreadable {
            path: path.to_owned(),
            message: message.into(),
        }
    }

    pub fn at(location: Location, message: impl Into<String>) -> Self {
        Self::Invalid {
            location,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_become_one_based_lines_and_columns() {
        let text = "a = 1\nbb = 2\n  ccc = 3\n";
        let at = text.find("ccc").unwrap();
        let loc = Location::from_span(Path::new("x.toml"), text, &(at..at + 3));
        assert_eq!((loc.line, loc.column), (3, 3));
        assert_eq!(loc.to_string(), "x.toml:3:3");
        let first = Location::from_span(Path::new("x.toml"), text, &(0..0));
        assert_eq!((first.line, first.column), (1, 1));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let text = "name = \"é\" x";
        let at = text.find('x').unwrap();
        let loc = Location::from_span(Path::new("f"), text, &(at..at + 1));
        assert_eq!(loc.column, 12);
    }
}
