use std::fmt;

use serde::{Serialize, Serializer};

/// What a secret looks like everywhere it is shown.
pub const REDACTED: &str = "********";

/// A password or other credential.
///
/// `Debug`, `Display` and `Serialize` all print [`REDACTED`], so a secret
/// cannot leak through logs, JSON output, state files or panic messages by
/// accident; [`Secret::expose`] is the one way to read it, and every call to
/// it is a place to review.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret in clear, for handing to a database driver.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}
