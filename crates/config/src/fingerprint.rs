//! The configuration hash a resumed run checks.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::Config;

/// Keys that change only how fast or how wide the run goes, not what it
/// copies: a user may change them between an interrupted run and its
/// resume (to lower memory after an OOM kill, say), so they are not hashed.
const TUNING_KEYS: &[&str] = &[
    "workers",
    "chunk_size",
    "parallel_readers",
    "write_ahead_writers",
    "memory_budget_percent",
    "read_ahead_buffers",
    "max_mssql_connections",
    "max_pg_connections",
    "copy_buffer_rows",
    "upsert_batch_size",
    "upsert_parallel_tasks",
    "max_retries",
    "reconnect_timeout",
    "analyze_after_load",
];

/// Keys never hashed: secrets, and where a secret is read from.
const SECRET_KEYS: &[&str] = &["password", "password_file", "password_command"];

/// A stable hash over the canonical configuration, without secrets or tuning
/// knobs, plus the canonical document itself so that a mismatch can name
/// the keys that changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fingerprint {
    /// `sha256:` followed by 64 lowercase hex digits.
    pub hash: String,
    /// The canonical JSON that was hashed (object keys sorted).
    pub canonical: Value,
}

impl Fingerprint {
    pub(crate) fn of(config: &Config) -> Self {
        let mut canonical = config.to_redacted_json();
        for section in ["source", "target"] {
            if let Some(Value::Object(map)) = canonical.get_mut(section) {
                for key in SECRET_KEYS {
                    map.remove(*key);
                }
            }
        }
        if let Some(Value::Object(map)) = canonical.get_mut("migration") {
            for key in TUNING_KEYS {
                map.remove(*key);
            }
        }
        Fingerprint::from_canonical(canonical)
    }

    /// Rebuilds a fingerprint from a stored canonical document.
    pub fn from_canonical(canonical: Value) -> Self {
        // serde_json's map keeps keys sorted, so the text is canonical.
        let text = canonical.to_string();
        let digest = Sha256::digest(text.as_bytes());
        let mut hash = String::with_capacity(7 + 64);
        hash.push_str("sha256:");
        for byte in digest {
            hash.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
            hash.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
        }
        Fingerprint { hash, canonical }
    }

    /// Dotted paths of every key whose value differs between the two
    /// configurations, for "resume refused: migration.target_mode changed".
    pub fn changed_keys(&self, other: &Fingerprint) -> Vec<String> {
        let mut out = Vec::new();
        diff(&self.canonical, &other.canonical, "", &mut out);
        out
    }
}

fn diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let child = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match (x.get(k), y.get(k)) {
                    (Some(v), Some(w)) => diff(v, w, &child, out),
                    _ => out.push(child),
                }
            }
        }
        _ if a != b => out.push(path.to_owned()),
        _ => {}
    }
}
