//! Keys written twice in one mapping.
//!
//! YAML and JSON parsers keep the last of two values for one key without a
//! word, so a file naming `target_mode` twice would run in whichever mode
//! came last. Such a file is refused instead, naming each repeated key
//! ([`repeated_keys`]). TOML refuses repeated keys itself.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The dotted paths of the keys that appear more than once in their
/// mapping, in document order, written as the loader's problems name keys
/// (`migration.max_partitions`, `migration.type_overrides[2].target_type`).
///
/// # Errors
/// The document's syntax error, which the caller leaves to the full parse
/// to report.
pub(crate) fn repeated_keys<'de, D: Deserializer<'de>>(document: D) -> Result<Vec<String>, D::Error> {
    let mut found = Vec::new();
    Walk { path: String::new(), found: &mut found }.deserialize(document)?;
    Ok(found)
}

/// Visits every value below `path`, noting repeated keys in `found`.
struct Walk<'a> {
    path: String,
    found: &'a mut Vec<String>,
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a configuration value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_bytes<E>(self, _: &[u8]) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Walk { path, found } = self;
        let mut index = 0usize;
        while seq.next_element_seed(Walk { path: format!("{path}[{index}]"), found: &mut *found })?.is_some() {
            index += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Walk { path, found } = self;
        let mut seen = BTreeSet::new();
        while let Some(KeyText(key)) = map.next_key()? {
            let at = child(&path, &key);
            if !seen.insert(key) {
                found.push(at.clone());
            }
            map.next_value_seed(Walk { path: at, found: &mut *found })?;
        }
        Ok(())
    }
}

/// A mapping key as text; YAML allows any value as a key.
struct KeyText(String);

impl<'de> serde::Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<KeyText, D::Error> {
        deserializer.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = KeyText;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_bool<E>(self, v: bool) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }

    fn visit_str<E>(self, v: &str) -> Result<KeyText, E> {
        Ok(KeyText(v.to_owned()))
    }

    fn visit_unit<E>(self) -> Result<KeyText, E> {
        Ok(KeyText("null".to_owned()))
    }

    fn visit_none<E>(self) -> Result<KeyText, E> {
        Ok(KeyText("null".to_owned()))
    }

    // A list or mapping as a key is no configuration key; the full parse
    // and validation say what is wrong with it.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyText, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(KeyText("[…]".to_owned()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyText, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(KeyText("{…}".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Vec<String> {
        repeated_keys(serde_yaml::Deserializer::from_str(text)).unwrap()
    }

    fn json(text: &str) -> Vec<String> {
        repeated_keys(&mut serde_json::Deserializer::from_str(text)).unwrap()
    }

    #[test]
    fn a_key_written_twice_in_one_mapping_is_found_with_its_path() {
        assert_eq!(
            yaml("migration: {target_mode: upsert, workers: 2, target_mode: drop_recreate}"),
            ["migration.target_mode"]
        );
        assert_eq!(
            yaml("source:\n  host: a\n  host: b\ntarget:\n  host: c\nsource: {}\n"),
            ["source.host", "source"],
            "document order, nested first"
        );
        assert_eq!(json(r#"{"target": {"port": 1, "port": 2}}"#), ["target.port"]);
        assert_eq!(
            yaml("migration:\n  change_columns: [{a: 1, a: 2}]\n"),
            ["migration.change_columns[0].a"],
            "inside lists too"
        );
    }

    #[test]
    fn the_same_key_in_different_mappings_is_no_repeat() {
        assert!(yaml("source: {host: a, port: 1}\ntarget: {host: b, port: 2}\n").is_empty());
        assert!(yaml("migration: {include_tables: [a, a]}").is_empty(), "list items may repeat");
        assert!(json(r#"{"a": {"x": 1}, "b": {"x": 1}}"#).is_empty());
        assert_eq!(yaml("1: a\n'1': b\n"), ["1"], "keys compare as text, as the loader keeps them");
    }
}
