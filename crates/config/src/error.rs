use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// One thing wrong with a configuration, tied to the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Dotted key path, e.g. `migration.workers` or `migration.type_overrides[2].target_type`.
    pub key: String,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
    /// Where the offending value came from (the file, or an environment variable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)?;
        if let Some(origin) = &self.origin {
            write!(f, " (from {origin})")?;
        }
        Ok(())
    }
}

/// Every problem found in one configuration, in key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} problem{} in the configuration:", if n == 1 { "" } else { "s" })?;
        for p in &self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {} not found (pass another path with -c/--config)", path.display())]
    NotFound { path: PathBuf },
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "config file {} has no recognised extension: use .yaml, .yml, .json or .toml",
        path.display()
    )]
    UnknownFormat { path: PathBuf },
    #[error("config file {} is not valid {format}: {message}", path.display())]
    Syntax { path: PathBuf, format: &'static str, message: String },
    #[error("{0}")]
    Invalid(Problems),
}
