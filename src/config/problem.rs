//! What a refused configuration reports: [`Problem`] (one located problem) and
//! [`ConfigError`] (every problem of one file), for `config.toml` and the web config alike.
//!
//! One type for both files so that an operator reads one shape of message, whichever file is
//! wrong: `file:line:col: context: key `k`: what is wrong and what to do` (README.md,
//! Configuration reference). Locating a byte offset as line and column, and finding the key of
//! the line serde complained about, live here too: they are how a problem gets its place.

use std::fmt;
use std::ops::Range;

/// One configuration problem, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// `target "lastfm", probe "artist.getInfo"`-style context, empty at top level.
    pub context: String,
    /// The offending key.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl Problem {
    /// A problem at byte `span.start` of `text` (unlocated without a span).
    pub(crate) fn at(
        text: &str,
        span: Option<Range<usize>>,
        context: &str,
        key: &str,
        message: String,
    ) -> Self {
        let (line, column) = span.map_or((None, None), |s| {
            let (l, c) = line_col(text, s.start);
            (Some(l), Some(c))
        });
        Self {
            line,
            column,
            context: context.to_owned(),
            key: key.to_owned(),
            message,
        }
    }

    /// A problem with a key but no place in the text (a value is wrong, not its syntax).
    pub(crate) fn of_key(key: &str, message: String) -> Self {
        Self {
            line: None,
            column: None,
            context: String::new(),
            key: key.to_owned(),
            message,
        }
    }
}

/// Why a configuration was refused: every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or `<string>`).
    pub origin: String,
    /// At least one problem.
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// A refusal for one problem.
    pub(crate) fn one(origin: &str, problem: Problem) -> Self {
        Self {
            origin: origin.to_owned(),
            problems: vec![problem],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.origin)?;
            if let Some(line) = problem.line {
                write!(f, ":{line}")?;
                if let Some(column) = problem.column {
                    write!(f, ":{column}")?;
                }
            }
            write!(f, ": ")?;
            if !problem.context.is_empty() {
                write!(f, "{}: ", problem.context)?;
            }
            if !problem.key.is_empty() {
                write!(f, "key `{}`: ", problem.key)?;
            }
            write!(f, "{}", problem.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The key of a `key = value` line whose value holds byte `offset`, for errors serde reports
/// without the key. `None` when the offset is not in a value (a broken header, a stray word).
pub(crate) fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |nl| nl + 1);
    let (key, _) = text[start..offset].split_once('=')?;
    let key = key.trim();
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'"'));
    bare.then(|| key.to_owned())
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before[nl + 1..].chars().count()
    }) + 1;
    (line, column)
}
