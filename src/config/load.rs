//! Reading the configuration file, overlaying `DOORMAN_` variables, development defaults, checks.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use toml::{Table, Value};

use super::Config;
use crate::core::random;
use crate::core::secret::Secret;

/// Prefix of the environment variables that set configuration keys.
const ENV_PREFIX: &str = "DOORMAN_";
/// Variables under this prefix belong to the test suite and never configure a server.
const TEST_ENV_PREFIX: &str = "DOORMAN_TEST_";
/// The file read when `--config` is not given and it exists in the working directory.
const DEFAULT_FILE: &str = "doorman.toml";

/// Sources of the configuration.
#[derive(Debug, Default)]
pub struct LoadOptions {
    /// The `--config` path; when absent, `doorman.toml` in the working directory if it exists.
    pub path: Option<PathBuf>,
    /// `serve --dev`.
    pub dev: bool,
    /// The process environment, as name and value pairs.
    pub env: Vec<(String, String)>,
}

/// A loaded configuration and the warnings to log once logging runs.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Loads, overlays and checks the configuration.
///
/// # Errors
/// A missing `--config` file, a file that is not valid TOML, a value of the wrong type, or a check
/// that fails (for example a missing or short `secret` outside development mode).
pub fn load(options: LoadOptions) -> anyhow::Result<Loaded> {
    let mut warnings = Vec::new();

    let file = resolve_file(options.path.as_deref())?;
    let mut table = match &file {
        Some(path) => read_table(path)?,
        None => Table::new(),
    };

    let variables: Vec<&(String, String)> = options
        .env
        .iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX) && !name.starts_with(TEST_ENV_PREFIX))
        .collect();
    let dev_mode = options.dev || (file.is_none() && variables.is_empty());

    let shape = Value::try_from(Config::default()).context("serializing the default configuration")?;
    for (name, value) in variables {
        overlay_variable(&mut table, &shape, name, value, &mut warnings)?;
    }

    if dev_mode {
        apply_dev_defaults(&mut table, &mut warnings)?;
    }

    let mut unknown = Vec::new();
    let parsed: Result<Config, _> = serde_ignored::deserialize(Value::Table(table), |path| {
        unknown.push(format!("unknown configuration key `{path}` is ignored"));
    });
    warnings.extend(unknown);
    let checked = parsed.context("invalid configuration").and_then(|mut config| {
        config.dev_mode = dev_mode;
        super::check::check(&config).map(|()| config)
    });

    match checked {
        Ok(config) => {
            warnings.extend(super::check::doubts(&config));
            Ok(Loaded { config, warnings })
        }
        // A misspelt key is often the cause of the failure, so the warnings go with the error.
        Err(error) if !warnings.is_empty() => Err(error.context(format!("{}", warnings.join("\n")))),
        Err(error) => Err(error),
    }
}

fn resolve_file(explicit: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    match explicit {
        Some(path) if path.is_file() => Ok(Some(path.to_path_buf())),
        Some(path) => bail!("configuration file {} not found", path.display()),
        None => {
            let default = PathBuf::from(DEFAULT_FILE);
            Ok(default.is_file().then_some(default))
        }
    }
}

fn read_table(path: &Path) -> anyhow::Result<Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading configuration file {}", path.display()))?;
    text.parse::<Table>()
        .with_context(|| format!("configuration file {} is not valid TOML", path.display()))
}

/// Sets one `DOORMAN_<SECTION>__<KEY>[_FILE]` variable into the table.
///
/// The value's TOML type follows the key's default: lists are comma-separated, booleans and integers
/// are parsed, everything else stays a string. A `_FILE` variable names a file whose contents, less
/// the trailing newline, are the value.
fn overlay_variable(
    table: &mut Table,
    shape: &Value,
    name: &str,
    raw: &str,
    warnings: &mut Vec<String>,
) -> anyhow::Result<()> {
    let key = &name[ENV_PREFIX.len()..];
    let (key, from_file) = match key.strip_suffix("_FILE") {
        Some(stripped) => (stripped, true),
        None => (key, false),
    };
    let path: Vec<String> = key.split("__").map(str::to_ascii_lowercase).collect();
    if path.iter().any(String::is_empty) {
        warnings.push(format!("environment variable {name} names no configuration key and is ignored"));
        return Ok(());
    }

    let text = if from_file {
        let contents = std::fs::read_to_string(raw)
            .with_context(|| format!("reading the file named by {name}"))?;
        contents.trim_end_matches(['\r', '\n']).to_string()
    } else {
        raw.to_string()
    };

    let Some(kind) = lookup_shape(shape, &path) else {
        warnings.push(format!("environment variable {name} sets no known configuration key and is ignored"));
        return Ok(());
    };
    let value = typed_value(kind, &text).with_context(|| format!("invalid value in {name}"))?;
    insert_path(table, &path, value);
    Ok(())
}

/// Finds the type of the key at `path` from its default value. Entries of `rate_limit.rules` and
/// `sync.tables` are named by the operator, so any name takes the shape of a rule or a table.
fn lookup_shape(shape: &Value, path: &[String]) -> Option<ShapeKind> {
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    match segments.as_slice() {
        ["rate_limit", "rules", _, "max"] => return Some(ShapeKind::Integer),
        ["rate_limit", "rules", _, "window"] => return Some(ShapeKind::Text),
        ["sync", "tables", _, "columns"] => return Some(ShapeKind::List),
        ["sync", "tables", _, "allow_delete"] => return Some(ShapeKind::Boolean),
        ["rate_limit", "rules", ..] | ["sync", "tables", ..] => return None,
        _ => {}
    }
    if is_known_optional(&segments.join(".")) {
        return Some(ShapeKind::Text);
    }

    let mut current = shape;
    for segment in &segments {
        current = current.get(*segment)?;
    }
    match current {
        Value::Boolean(_) => Some(ShapeKind::Boolean),
        Value::Integer(_) => Some(ShapeKind::Integer),
        Value::Array(_) => Some(ShapeKind::List),
        Value::Table(_) => None,
        _ => Some(ShapeKind::Text),
    }
}

/// Keys whose default is `None`, so the serialized defaults do not show them.
fn is_known_optional(key: &str) -> bool {
    const OPTIONAL: &[&str] = &[
        "secret",
        "server.base_url",
        "server.trusted_proxy_header",
        "mail.smtp_url",
        "mail.from",
        "captcha.secret",
        "captcha.verify_url",
        "captcha.expected_action",
        "rate_limit.redis_url",
        "sync.powersync_url",
        "sync.database_url",
        "sync.hs256_secret",
        "sync.hs256_kid",
    ];
    OPTIONAL.contains(&key)
}

#[derive(Debug, Clone, Copy)]
enum ShapeKind {
    Text,
    Boolean,
    Integer,
    List,
}

fn typed_value(kind: ShapeKind, text: &str) -> anyhow::Result<Value> {
    Ok(match kind {
        ShapeKind::Text => Value::String(text.to_string()),
        ShapeKind::Boolean => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Value::Boolean(true),
            "false" | "0" => Value::Boolean(false),
            _ => bail!("expected true or false, found {text:?}"),
        },
        ShapeKind::Integer => Value::Integer(
            text.trim().parse().with_context(|| format!("expected a whole number, found {text:?}"))?,
        ),
        ShapeKind::List => Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.to_string()))
                .collect(),
        ),
    })
}

fn insert_path(table: &mut Table, path: &[String], value: Value) {
    let (last, parents) = path.split_last().expect("paths have at least one segment");
    let mut current = table;
    for segment in parents {
        let entry = current.entry(segment.clone()).or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        current = entry.as_table_mut().expect("the entry was just made a table");
    }
    current.insert(last.clone(), value);
}

fn has_path(table: &Table, path: &[&str]) -> bool {
    let mut current = table;
    for (depth, segment) in path.iter().enumerate() {
        match current.get(*segment) {
            Some(Value::Table(next)) if depth + 1 < path.len() => current = next,
            Some(_) if depth + 1 == path.len() => return true,
            _ => return false,
        }
    }
    false
}

/// Fills what development mode provides wherever the operator left the key unset, with one
/// warning line for each.
fn apply_dev_defaults(table: &mut Table, warnings: &mut Vec<String>) -> anyhow::Result<()> {
    let defaults = Config::default();
    let text = |value: &str| Value::String(value.to_string());

    if !has_path(table, &["database", "url"]) {
        warnings.push(format!("development mode: database is the SQLite file {}", defaults.database.url));
    }
    if !has_path(table, &["secret"]) {
        let url = table
            .get("database")
            .and_then(|section| section.get("url"))
            .and_then(Value::as_str)
            .unwrap_or(&defaults.database.url)
            .to_string();
        let path = dev_secret_path(&url);
        let (secret, created) = read_or_create_dev_secret(&path)?;
        insert_path(table, &["secret".into()], Value::String(secret.expose().to_string()));
        let origin = if created { "generated into" } else { "read from" };
        warnings.push(format!("development mode: secret is {origin} {}", path.display()));
    }
    if !has_path(table, &["mail", "transport"]) {
        insert_path(table, &["mail".into(), "transport".into()], text("console"));
        warnings.push("development mode: mail is printed to standard output".into());
    }
    if !has_path(table, &["captcha", "provider"]) {
        insert_path(table, &["captcha".into(), "provider".into()], text("none"));
        warnings.push("development mode: no bot check guards guest creation".into());
    }
    if !has_path(table, &["anonymous", "enabled"]) {
        insert_path(table, &["anonymous".into(), "enabled".into()], Value::Boolean(true));
        warnings.push("development mode: anonymous guests are enabled".into());
    }
    if !has_path(table, &["server", "listen"]) {
        warnings.push(format!("development mode: listening on {}", defaults.server.listen));
    }
    Ok(())
}

/// Returns the development secret's path: `<file stem>.secret` beside the SQLite file, or
/// `doorman.secret` in the working directory for other databases.
fn dev_secret_path(database_url: &str) -> PathBuf {
    match crate::store::sqlite_file(database_url) {
        Some(file) => file.with_extension("secret"),
        None => PathBuf::from("doorman.secret"),
    }
}

/// Reads the development secret, or generates and stores it; the flag is true when generated.
fn read_or_create_dev_secret(path: &Path) -> anyhow::Result<(Secret, bool)> {
    if path.is_file() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the development secret {}", path.display()))?;
        return Ok((Secret::new(text.trim()), false));
    }

    let secret = Secret::new(random::alphanumeric(48));
    write_private_file(path, secret.expose())
        .with_context(|| format!("writing the development secret {}", path.display()))?;
    Ok((secret, true))
}

fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents.as_bytes())
}

/// Serializes the configuration as TOML with secrets and URL passwords replaced by `REDACTED`.
///
/// # Errors
/// Fails only if the configuration cannot be serialized, which would be a bug.
pub fn redacted_toml(config: &Config) -> anyhow::Result<String> {
    let mut config = config.clone();
    redact_url(&mut config.database.url);
    for url in [
        &mut config.mail.smtp_url,
        &mut config.rate_limit.redis_url,
        &mut config.sync.database_url,
        &mut config.sync.powersync_url,
        &mut config.captcha.verify_url,
    ]
    .into_iter()
    .flatten()
    {
        redact_url(url);
    }
    toml::to_string(&config).context("serializing the configuration")
}

/// Replaces the password of a URL, in its user part or in a `password` query parameter.
fn redact_url(text: &mut String) {
    let Ok(mut url) = url::Url::parse(text) else { return };
    if url.password().is_some() {
        let _ = url.set_password(Some("REDACTED"));
    }
    if url.query_pairs().any(|(key, _)| key == "password") {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(key, value)| {
                let value = if key == "password" { "REDACTED".to_string() } else { value.into_owned() };
                (key.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    *text = url.to_string();
}

#[cfg(test)]
mod tests;
