//! Configuration errors: every problem found in one load, each with where it is.

use std::fmt;
use std::ops::Range;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or other origin) the text came from.
    pub origin: String,
    /// 1-based line and column, when the problem has a position in the text.
    pub position: Option<(usize, usize)>,
    /// Path of the offending value (`zone[2].forward`); empty for the whole file.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if self.path.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.path, self.message)
        }
    }
}

/// Every problem found while loading a configuration; `Display` prints one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Collects errors for one origin while a loader keeps going.
#[derive(Debug)]
pub(crate) struct Collector<'t> {
    origin: String,
    text: &'t str,
    errors: Vec<ConfigError>,
}

impl<'t> Collector<'t> {
    pub(crate) fn new(origin: &str, text: &'t str) -> Self {
        Collector {
            origin: origin.to_string(),
            text,
            errors: Vec::new(),
        }
    }

    /// An error known only by its path.
    pub(crate) fn at(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(None, path.into(), message.into());
    }

    /// An error at a byte span of the text.
    pub(crate) fn spanned(
        &mut self,
        span: Option<Range<usize>>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        let position = span.map(|s| line_col(self.text, s.start));
        self.push(position, path.into(), message.into());
    }

    /// An error at a known 1-based line and column.
    pub(crate) fn at_line(
        &mut self,
        position: (usize, usize),
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.push(Some(position), path.into(), message.into());
    }

    fn push(&mut self, position: Option<(usize, usize)>, path: String, message: String) {
        let origin = self.origin.clone();
        self.errors.push(ConfigError {
            origin,
            position,
            path,
            message,
        });
    }

    /// Every error reported so far.
    pub(crate) fn into_errors(self) -> ConfigErrors {
        ConfigErrors {
            errors: self.errors,
        }
    }

    /// `Ok(value)` if nothing was reported, else every error.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors {
                errors: self.errors,
            })
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}

impl ConfigErrors {
    /// A single error with no position (unreadable file and the like).
    pub fn single(origin: &str, message: impl Into<String>) -> Self {
        let error = ConfigError {
            origin: origin.to_string(),
            position: None,
            path: String::new(),
            message: message.into(),
        };
        ConfigErrors {
            errors: vec![error],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_lines_and_chars() {
        let text = "a = 1\nbé = \"x\"\n";
        for (offset, want) in [
            (0, (1, 1)),
            (4, (1, 5)),
            (6, (2, 1)),
            (10, (2, 4)),
            (999, (3, 1)),
        ] {
            assert_eq!(line_col(text, offset), want, "offset {offset}");
        }
    }

    #[test]
    fn display_one_per_line_with_origin_position_and_path() {
        let mut c = Collector::new("z.toml", "x\ny = 2s\n");
        c.at("zone[2].forward", "unknown upstream \"corp\"");
        c.spanned(Some(6..8), "", "invalid type");
        let err = c.finish(()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "z.toml: zone[2].forward: unknown upstream \"corp\"\nz.toml:2:5: invalid type"
        );
    }
}
