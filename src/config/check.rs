//! Checks that reject a configuration Doorman cannot run with, naming the key and the fix.

use anyhow::bail;

use super::Config;

/// Minimum length in bytes of `secret` and of each entry of `secrets`.
const MIN_SECRET_BYTES: usize = 32;

/// Rejects configurations that cannot run, naming the key and the fix.
pub(super) fn check(config: &Config) -> anyhow::Result<()> {
    let mut problems = Vec::new();

    match &config.secret {
        None => problems.push(
            "`secret` is missing: set it in the configuration file, in DOORMAN_SECRET or in a file \
             named by DOORMAN_SECRET_FILE (at least 32 bytes of random text, for example the output \
             of `openssl rand -base64 48`), or run `doorman serve --dev` for development"
                .to_string(),
        ),
        Some(secret) if secret.expose().len() < MIN_SECRET_BYTES => problems.push(format!(
            "`secret` is {} bytes long; it must have at least {MIN_SECRET_BYTES}, for example the output of \
             `openssl rand -base64 48`",
            secret.expose().len()
        )),
        Some(_) => {}
    }
    for (index, older) in config.secrets.iter().enumerate() {
        if older.expose().len() < MIN_SECRET_BYTES {
            problems.push(format!("`secrets[{index}]` must have at least {MIN_SECRET_BYTES} bytes"));
        }
    }

    check_base_path("server.base_path", &config.server.base_path, &mut problems);
    check_base_path("sync.base_path", &config.sync.base_path, &mut problems);
    match url::Url::parse(&config.base_url()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
        _ => problems.push(format!(
            "`server.base_url` must be an http or https URL, such as https://auth.example.com; found {:?}",
            config.base_url()
        )),
    }
    for pattern in &config.server.trusted_origins {
        if let Err(reason) = crate::http::origin::OriginPattern::parse(pattern) {
            problems.push(format!("`server.trusted_origins` entry {pattern:?} is invalid: {reason}"));
        }
    }
    if config.server.max_connections == 0 {
        problems.push("`server.max_connections` must be at least 1".into());
    }
    for (key, value) in [
        ("server.request_timeout", config.server.request_timeout),
        ("server.header_read_timeout", config.server.header_read_timeout),
        ("session.expires_in", config.session.expires_in),
        ("session.max_age", config.session.max_age),
        ("email_otp.expires_in", config.email_otp.expires_in),
    ] {
        if value.get().is_zero() {
            problems.push(format!("`{key}` must be longer than zero"));
        }
    }
    if config.session.update_age > config.session.expires_in {
        problems.push("`session.update_age` must not exceed `session.expires_in`".into());
    }
    let prefix = &config.session.cookie_prefix;
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        problems.push(format!(
            "`session.cookie_prefix` must be letters, digits, '-', '_' or '.'; found {prefix:?}"
        ));
    }
    if !(6..=10).contains(&config.email_otp.length) {
        problems.push(format!("`email_otp.length` must be 6 to 10 digits; found {}", config.email_otp.length));
    }
    if config.rate_limit.backend == super::RateLimitBackend::Redis && config.rate_limit.redis_url.is_none() {
        problems.push("`rate_limit.redis_url` is required with `rate_limit.backend = \"redis\"`".into());
    }
    if config.email_otp.max_attempts == 0 {
        problems.push("`email_otp.max_attempts` must be at least 1".into());
    }
    for (name, rule) in &config.rate_limit.rules {
        if rule.max == 0 || rule.window.get().is_zero() {
            problems.push(format!("`rate_limit.rules.{name}` needs a `max` and a `window` above zero"));
        }
    }

    check_sync(config, &mut problems);
    check_captcha(config, &mut problems);

    if problems.is_empty() {
        Ok(())
    } else {
        bail!("invalid configuration:\n  - {}", problems.join("\n  - "))
    }
}

/// Lists settings that run but probably do not do what the operator meant.
pub(super) fn doubts(config: &Config) -> Vec<String> {
    let mut doubts = Vec::new();
    let sync = &config.sync;
    if sync.powersync_url.is_none() && (sync.database_url.is_some() || !sync.tables.is_empty()) {
        doubts.push(
            "`sync.database_url` or `sync.tables` is set without `sync.powersync_url`, so every sync route, \
             upload included, returns 404"
                .to_string(),
        );
    }
    doubts
}

fn check_base_path(key: &str, path: &str, problems: &mut Vec<String>) {
    let valid = path.starts_with('/') && !path.ends_with('/') && !path.contains("//") && !path.contains('?');
    if !valid {
        problems.push(format!("`{key}` must start with '/' and not end with '/', such as /api/auth; found {path:?}"));
    }
}

/// Maximum sync token lifetime PowerSync accepts.
const MAX_SYNC_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(86_400);

fn check_sync(config: &Config, problems: &mut Vec<String>) {
    let ttl = config.sync.token_ttl.get();
    if ttl.is_zero() || ttl > MAX_SYNC_TOKEN_TTL {
        problems.push(format!("`sync.token_ttl` must be longer than zero and at most 24h; found {}", config.sync.token_ttl));
    }
    let general_audience = url::Url::parse(&config.base_url()).map(|url| url.origin().ascii_serialization()).unwrap_or_default();
    if config.sync.audience == general_audience {
        problems.push(format!(
            "`sync.audience` must differ from the general JWT audience {general_audience:?}, so a /token JWT never passes as a sync token"
        ));
    }
    match config.sync.alg.as_str() {
        "EdDSA" | "RS256" | "ES256" => {}
        "HS256" => check_hs256(config, problems),
        other => problems.push(format!("`sync.alg` must be EdDSA, RS256, ES256 or HS256; found {other:?}")),
    }
    if config.sync.max_devices == 0 {
        problems.push("`sync.max_devices` must be at least 1".into());
    }
    if config.sync.database_url.is_some() {
        check_uploads(config, problems);
    }
}

/// Longest PostgreSQL identifier, in bytes.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// Checks that `name` is a plain PostgreSQL identifier: a letter or `_`, then letters, digits or `_`.
fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= MAX_IDENTIFIER_BYTES
        && bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn check_uploads(config: &Config, problems: &mut Vec<String>) {
    let sync = &config.sync;
    let url = sync.database_url.as_deref().unwrap_or_default();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        problems.push("`sync.database_url` must be a postgres:// URL: uploads go to the PostgreSQL database PowerSync replicates".into());
    }
    for (key, name) in [("sync.schema", &sync.schema), ("sync.owner_column", &sync.owner_column)] {
        if !is_identifier(name) {
            problems.push(format!("`{key}` must be a plain identifier (letters, digits, '_'); found {name:?}"));
        }
    }
    if sync.tables.is_empty() {
        problems.push("`sync.tables` lists no table, so every upload would be rejected; add `[sync.tables.<name>] columns = [...]`".into());
    }
    for (table, rule) in &sync.tables {
        if !is_identifier(table) {
            problems.push(format!("`sync.tables` key {table:?} must be a plain identifier (letters, digits, '_')"));
        }
        for column in &rule.columns {
            if column == "id" || *column == sync.owner_column {
                problems.push(format!(
                    "`sync.tables.{table}.columns` lists {column:?}; the id and the owner column are never written from a client"
                ));
            } else if !is_identifier(column) {
                problems.push(format!("`sync.tables.{table}.columns` entry {column:?} must be a plain identifier"));
            }
        }
    }
    if sync.max_operations == 0 {
        problems.push("`sync.max_operations` must be at least 1".into());
    }
    if sync.max_body.0 < 1024 {
        problems.push(format!("`sync.max_body` must be at least 1KiB; found {} bytes", sync.max_body.0));
    }
}

/// Prefixes of Cloudflare Turnstile's dummy secrets, which accept a well-known token.
const TEST_SECRET_PREFIXES: [&str; 3] = ["1x0000", "2x0000", "3x0000"];

fn check_captcha(config: &Config, problems: &mut Vec<String>) {
    use super::CaptchaProvider;

    let provider = config.captcha.provider;
    let cost = config.captcha.altcha_cost;
    if !(1..=crate::captcha::altcha::MAX_COST).contains(&cost) {
        problems.push(format!("`captcha.altcha_cost` must be 1 to {}; found {cost}", crate::captcha::altcha::MAX_COST));
    }
    // A challenge must expire before its spent mark does, or a solved payload would pass again.
    if config.captcha.challenge_ttl.get().is_zero() || config.captcha.challenge_ttl > super::Duration::minutes(10) {
        problems.push(format!(
            "`captcha.challenge_ttl` must be longer than zero and at most 10m; found {}",
            config.captcha.challenge_ttl
        ));
    }
    if matches!(provider, CaptchaProvider::Turnstile | CaptchaProvider::Hcaptcha) && config.captcha.secret.is_none() {
        problems.push("`captcha.secret` is required with a turnstile or hcaptcha provider".into());
    }

    // Over http these are allowed, for local tests; a public deployment must guard guest creation.
    let public = config.base_url().starts_with("https://");
    if config.dev_mode || !public || !config.anonymous.enabled {
        return;
    }
    if provider == CaptchaProvider::None && !config.captcha.allow_none {
        problems.push(
            "guests are enabled on an https base_url without a bot check: set `captcha.provider` (turnstile, \
             hcaptcha or altcha), or `captcha.allow_none = true` to accept bots minting guests"
                .into(),
        );
    }
    let secret = config.captcha.secret.as_ref().map(|secret| secret.expose()).unwrap_or_default();
    if provider == CaptchaProvider::Turnstile && TEST_SECRET_PREFIXES.iter().any(|prefix| secret.starts_with(prefix)) {
        problems.push("`captcha.secret` is a Cloudflare test secret, which accepts a public dummy token".into());
    }
}

/// Minimum decoded length of `sync.hs256_secret`.
const MIN_HS256_BYTES: usize = 32;

fn check_hs256(config: &Config, problems: &mut Vec<String>) {
    match &config.sync.hs256_secret {
        None => problems.push("`sync.hs256_secret` is required with `sync.alg = \"HS256\"`".into()),
        Some(shared) => {
            match super::decode_base64url(shared.expose()) {
                Ok(bytes) if bytes.len() >= MIN_HS256_BYTES => {}
                Ok(_) => problems.push(format!("`sync.hs256_secret` must decode to at least {MIN_HS256_BYTES} bytes")),
                Err(_) => problems.push("`sync.hs256_secret` must be base64url".into()),
            }
            // The HMAC key is the decoded value, so compare both the text and the decoded bytes with
            // every configured secret: PowerSync has this key, and it must reveal none of them.
            let decoded = super::decode_base64url(shared.expose()).unwrap_or_default();
            let reveals_secret = config.secret.iter().chain(&config.secrets).any(|secret| {
                let text = secret.expose();
                shared.expose().trim() == text.trim() || decoded == text.as_bytes()
            });
            if reveals_secret {
                problems.push("`sync.hs256_secret` must differ from `secret` and every entry of `secrets`".into());
            }
        }
    }
    if config.sync.hs256_kid.as_deref().is_none_or(str::is_empty) {
        problems.push("`sync.hs256_kid` is required with `sync.alg = \"HS256\"`; PowerSync's inline key must carry it".into());
    }
}
