//! Reading a configuration: file → `${VAR}` expansion → environment overrides
//! → validation.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Json, Toml, Yaml};
use figment::value::{Dict, Tag, Value};

use crate::error::{ConfigError, Problem, Problems};
use crate::{Config, expand, validate};

/// Environment variables starting with this override configuration keys:
/// `MSSQL_PG_MIGRATE__MIGRATION__WORKERS=8` sets `migration.workers`.
pub const ENV_PREFIX: &str = "MSSQL_PG_MIGRATE__";
/// Separates the section from the key (and nested keys) in override names.
pub const ENV_SEPARATOR: &str = "__";

/// Loads and validates configurations.
///
/// The environment is injected (see [`Loader::with_env`]) rather than read
/// behind the caller's back, so tests and embedding programs control it;
/// [`Loader::from_process_env`] uses the process environment.
#[derive(Debug, Clone, Default)]
pub struct Loader {
    env: Vec<(String, String)>,
}

/// Where values came from, to tell the user which line to fix.
pub(crate) struct Origins {
    file: Option<PathBuf>,
    env_keys: BTreeSet<String>,
}

impl Origins {
    pub(crate) fn of(&self, key: &str) -> Option<String> {
        if self.env_keys.contains(key) {
            return Some(format!("environment variable {}", env_var_name(key)));
        }
        self.file.as_ref().map(|f| f.display().to_string())
    }
}

/// The override variable for a dotted key path.
pub fn env_var_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', ENV_SEPARATOR).to_ascii_uppercase())
}

impl Loader {
    /// A loader that sees no environment variables.
    pub fn new() -> Self {
        Loader::default()
    }

    /// A loader that sees the process environment.
    pub fn from_process_env() -> Self {
        Loader { env: std::env::vars().collect() }
    }

    /// Adds variables to what `${VAR}` references and overrides see.
    pub fn with_env<K: Into<String>, V: Into<String>>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self {
        self.env.extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    fn lookup(&self, name: &str) -> Option<String> {
        // Later entries win, like repeated `export`s.
        self.env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    /// Loads a `.yaml`/`.yml`, `.json` or `.toml` file. A relative
    /// `password_file` is resolved against the file's folder.
    ///
    /// # Errors
    /// [`ConfigError::NotFound`], [`ConfigError::Read`], [`ConfigError::UnknownFormat`],
    /// [`ConfigError::Syntax`], or [`ConfigError::Invalid`] with every problem found.
    pub fn load_file(&self, path: &Path) -> Result<Config, ConfigError> {
        let format = match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase) {
            Some(e) if e == "yaml" || e == "yml" => "yaml",
            Some(e) if e == "json" => "json",
            Some(e) if e == "toml" => "toml",
            _ => return Err(ConfigError::UnknownFormat { path: path.to_owned() }),
        };
        let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ConfigError::NotFound { path: path.to_owned() },
            _ => ConfigError::Read { path: path.to_owned(), source },
        })?;
        let base = path.parent().map(Path::to_owned).unwrap_or_default();
        self.load_text(&text, format, Some(path), &base)
    }

    /// Loads configuration text in `format` (`yaml`, `json` or `toml`);
    /// relative `password_file`s resolve against the current directory.
    ///
    /// # Errors
    /// As [`Loader::load_file`].
    pub fn load_str(&self, text: &str, format: &str) -> Result<Config, ConfigError> {
        self.load_text(text, format, None, Path::new(""))
    }

    fn load_text(&self, text: &str, format: &str, file: Option<&Path>, base: &Path) -> Result<Config, ConfigError> {
        let shown_path = file.map(Path::to_owned).unwrap_or_else(|| PathBuf::from("<string>"));
        let (figment, format_name) = match format {
            "yaml" | "yml" => (Figment::from(Yaml::string(text)), "YAML"),
            "json" => (Figment::from(Json::string(text)), "JSON"),
            "toml" => (Figment::from(Toml::string(text)), "TOML"),
            _ => return Err(ConfigError::UnknownFormat { path: shown_path }),
        };
        let syntax = |message: String| ConfigError::Syntax { path: shown_path.clone(), format: format_name, message };
        // A syntax error here is the full parse's to report, below.
        let repeated = match format_name {
            "YAML" => crate::repeated::repeated_keys(serde_yaml::Deserializer::from_str(text)).unwrap_or_default(),
            "JSON" => crate::repeated::repeated_keys(&mut serde_json::Deserializer::from_str(text)).unwrap_or_default(),
            _ => Vec::new(),
        };
        if !repeated.is_empty() {
            let origin = file.map(|f| f.display().to_string());
            return Err(ConfigError::Invalid(Problems(
                repeated
                    .into_iter()
                    .map(|key| Problem {
                        key,
                        message: "is given more than once in the same mapping; only one value can hold, \
                                  so remove the others"
                            .into(),
                        origin: origin.clone(),
                    })
                    .collect(),
            )));
        }
        let mut root = match figment.find_value("") {
            Ok(Value::Dict(_, dict)) => dict,
            Ok(_) => return Err(syntax("the top level must be a mapping with source, target and migration".into())),
            // An empty YAML document has no mapping; say so plainly.
            Err(_) if text.trim().is_empty() => return Err(syntax("the file is empty".into())),
            Err(e) => return Err(syntax(e.to_string())),
        };

        let mut problems = Vec::new();
        let mut origins = Origins { file: file.map(Path::to_owned), env_keys: BTreeSet::new() };
        let lookup = |name: &str| self.lookup(name);
        // Expansion runs before overrides are merged, so every value it sees came from the file.
        expand_strings(&mut root, "", &lookup, &mut |key, message| {
            let origin = origins.of(&key);
            problems.push(Problem { key, message, origin });
        });

        for (name, value) in &self.env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
            let path: Vec<String> = rest.split(ENV_SEPARATOR).map(str::to_ascii_lowercase).collect();
            if path.iter().any(String::is_empty) {
                problems.push(Problem {
                    key: path.join("."),
                    message: format!("environment variable {name} has an empty key segment"),
                    origin: Some(format!("environment variable {name}")),
                });
                continue;
            }
            insert_path(&mut root, &path, Value::String(Tag::Default, value.clone()));
            origins.env_keys.insert(path.join("."));
        }

        let result = validate::build(&root, &origins, base, &|name| self.lookup(name));
        match result {
            Ok(config) if problems.is_empty() => Ok(config),
            Ok(_) => Err(ConfigError::Invalid(Problems(problems))),
            Err(Problems(more)) => {
                problems.extend(more);
                problems.sort_by(|a, b| a.key.cmp(&b.key));
                Err(ConfigError::Invalid(Problems(problems)))
            }
        }
    }
}

fn expand_strings(
    dict: &mut Dict,
    prefix: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    report: &mut dyn FnMut(String, String),
) {
    for (key, value) in dict.iter_mut() {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        expand_value(value, &path, lookup, report);
    }
}

fn expand_value(
    value: &mut Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    report: &mut dyn FnMut(String, String),
) {
    match value {
        Value::String(_, s) => match expand::expand(s, lookup) {
            Ok(expanded) => *s = expanded,
            Err(message) => report(path.to_owned(), message),
        },
        Value::Dict(_, d) => expand_strings(d, path, lookup, report),
        Value::Array(_, items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, &format!("{path}[{i}]"), lookup, report);
            }
        }
        _ => {}
    }
}

fn insert_path(dict: &mut Dict, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut current = dict;
    for segment in parents {
        let entry = current.entry(segment.clone()).or_insert_with(|| Value::Dict(Tag::Default, Dict::new()));
        if !matches!(entry, Value::Dict(..)) {
            // An override of a nested key replaces a scalar written in the file.
            *entry = Value::Dict(Tag::Default, Dict::new());
        }
        let Value::Dict(_, next) = entry else { return };
        current = next;
    }
    current.insert(last.clone(), value);
}
