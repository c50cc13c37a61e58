//! The guide's exit codes, and the error the binary reports.

use std::process::ExitCode;

/// Exit codes of the data engineer's guide; orchestrators branch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    /// Fix the configuration; do not retry.
    Config = 1,
    /// Retry after a delay.
    Connection = 2,
    /// Check the logs; may retry.
    Transfer = 3,
    /// Investigate the data.
    Validation = 4,
    /// Interrupted by a user or a signal.
    Cancelled = 5,
    /// Check the state file.
    State = 6,
    /// Check disk space and permissions.
    Io = 7,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The `kind` reported in JSON output.
    pub fn kind(self) -> &'static str {
        match self {
            Exit::Success => "success",
            Exit::Config => "config",
            Exit::Connection => "connection",
            Exit::Transfer => "transfer",
            Exit::Validation => "validation",
            Exit::Cancelled => "cancelled",
            Exit::State => "state",
            Exit::Io => "io",
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

/// A failure at the binary's edge: what to print and how to exit.
#[derive(Debug)]
pub struct CliError {
    pub exit: Exit,
    pub message: String,
    /// Structured problems (for configuration errors), for JSON output.
    pub problems: Option<serde_json::Value>,
    /// The command's result document, when it got far enough to have one
    /// (a run with failed tables, a validation with mismatches); the JSON
    /// output is this document with the error added.
    pub document: Option<serde_json::Value>,
    /// The run this failure belongs to, once its state exists.
    pub run_id: Option<String>,
}

impl CliError {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        CliError { exit, message: message.into(), problems: None, document: None, run_id: None }
    }

    pub fn with_document(mut self, document: serde_json::Value) -> Self {
        self.document = Some(document);
        self
    }
}
