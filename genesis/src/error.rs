//! [`GenesisError`]: what is wrong with a genesis document, and where.

use std::fmt;
use std::path::{Path, PathBuf};

/// A genesis document that cannot be used.
///
/// `path` is the field in JSON-path form (`validators[2].consensus_key`, `params.heartbeat_ms`),
/// empty when the problem is the document as a whole (invalid JSON, unreadable file).
/// `file` is set by [`Genesis::load`](crate::Genesis::load).
///
/// Displays as `"{file}: {path}: {message}"`, leaving out the parts that are absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenesisError {
    pub file: Option<PathBuf>,
    pub path: String,
    pub message: String,
}

impl std::error::Error for GenesisError {}

impl fmt::Display for GenesisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl GenesisError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        GenesisError {
            file: None,
            path: path.into(),
            message: message.into(),
        }
    }

    /// The same error, naming `file`.
    pub fn in_file(mut self, file: &Path) -> Self {
        self.file = Some(file.to_path_buf());
        self
    }

    /// A JSON parse error: field-precise for type, missing and unknown fields; line and
    /// column for syntax errors.
    pub(crate) fn from_json_error(e: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = if e.path().iter().next().is_none() {
            String::new()
        } else {
            e.path().to_string()
        };
        let inner = e.into_inner();
        if !inner.is_data() {
            return Self::from_serde_json(inner);
        }
        let message = strip_location(&inner);
        // serde reports missing and duplicate fields at their parent; point at the field.
        let named = |prefix: &str| message.strip_prefix(prefix)?.strip_suffix('`');
        let child = |field: &str| {
            if path.is_empty() {
                field.to_string()
            } else {
                format!("{path}.{field}")
            }
        };
        if let Some(field) = named("missing field `") {
            return GenesisError::new(child(field), "required field is missing");
        }
        if let Some(field) = named("duplicate field `") {
            return GenesisError::new(
                child(field),
                format!("duplicate field `{field}`; give each field once"),
            );
        }
        GenesisError::new(path, message)
    }

    /// A serde_json error without a field path (syntax, end of input, trailing characters).
    pub(crate) fn from_serde_json(e: serde_json::Error) -> Self {
        let message = strip_location(&e);
        if e.line() == 0 {
            return GenesisError::new("", format!("invalid JSON: {message}"));
        }
        if e.is_eof() {
            return GenesisError::new(
                "",
                format!(
                    "invalid JSON: the document ends early, at line {} ({message}); it may be \
                     truncated",
                    e.line()
                ),
            );
        }
        GenesisError::new(
            "",
            format!(
                "invalid JSON at line {}, column {}: {message}",
                e.line(),
                e.column()
            ),
        )
    }
}

/// serde_json's message without its `" at line L column C"` suffix.
fn strip_location(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    full.strip_suffix(&suffix).unwrap_or(&full).to_string()
}
