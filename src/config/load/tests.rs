use super::*;

const SECRET: &str = "a-secret-of-at-least-thirty-two-bytes-long";

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
}

fn load_env(pairs: &[(&str, &str)]) -> anyhow::Result<Loaded> {
    load(LoadOptions { path: Some(empty_file()), dev: false, env: env(pairs) })
}

/// An empty configuration file, so the working directory's `doorman.toml` is never read.
fn empty_file() -> PathBuf {
    let file = tempfile::NamedTempFile::new().unwrap();
    let (_, path) = file.keep().unwrap();
    path
}

#[test]
fn variables_are_typed_by_their_defaults() {
    let loaded = load_env(&[
        ("DOORMAN_SECRET", SECRET),
        ("DOORMAN_SERVER__LISTEN", "0.0.0.0:8080"),
        ("DOORMAN_SERVER__TRUSTED_ORIGINS", "https://a.example.com, tauri://localhost,"),
        ("DOORMAN_SESSION__BEARER", "false"),
        ("DOORMAN_DATABASE__MAX_CONNECTIONS", "7"),
        ("DOORMAN_SESSION__EXPIRES_IN", "2d"),
    ])
    .unwrap();

    let config = loaded.config;
    assert_eq!(config.server.listen.port(), 8080);
    assert_eq!(config.server.trusted_origins, vec!["https://a.example.com", "tauri://localhost"]);
    assert!(!config.session.bearer);
    assert_eq!(config.database.max_connections, 7);
    assert_eq!(config.session.expires_in, crate::config::Duration::days(2));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn optional_keys_and_rules_are_settable_by_variables() {
    let config = load_env(&[
        ("DOORMAN_SECRET", SECRET),
        ("DOORMAN_SERVER__BASE_URL", "https://auth.example.com"),
        ("DOORMAN_RATE_LIMIT__RULES__SIGN_IN__MAX", "20"),
        ("DOORMAN_RATE_LIMIT__RULES__SIGN_IN__WINDOW", "1m"),
    ])
    .unwrap()
    .config;

    assert_eq!(config.base_url(), "https://auth.example.com");
    assert_eq!(config.rate_limit.rules["sign_in"].max, 20);
}

#[test]
fn variables_override_the_file() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("secret = \"{SECRET}\"\n[server]\nbase_path = \"/auth\"\n")).unwrap();

    let loaded = load(LoadOptions {
        path: Some(file.path().to_path_buf()),
        dev: false,
        env: env(&[("DOORMAN_SERVER__BASE_PATH", "/v1/api/auth")]),
    })
    .unwrap();

    assert_eq!(loaded.config.server.base_path, "/v1/api/auth");
}

#[test]
fn file_variable_supplies_a_secret() {
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), format!("{SECRET}\n")).unwrap();

    let config = load_env(&[("DOORMAN_SECRET_FILE", secret_file.path().to_str().unwrap())]).unwrap().config;

    assert_eq!(config.secret.unwrap().expose(), SECRET);
}

#[test]
fn missing_secret_names_the_key() {
    let error = load_env(&[("DOORMAN_ANONYMOUS__ENABLED", "true")]).unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains("`secret` is missing"), "{message}");
}

#[test]
fn short_secret_is_rejected() {
    let error = load_env(&[("DOORMAN_SECRET", "short")]).unwrap_err();
    assert!(format!("{error:#}").contains("at least 32"));
}

#[test]
fn short_older_secret_is_rejected() {
    let error = load_env(&[("DOORMAN_SECRET", SECRET), ("DOORMAN_SECRETS", "short")]).unwrap_err();
    assert!(format!("{error:#}").contains("secrets[0]"));
}

#[test]
fn wrongly_typed_variable_names_the_variable() {
    let error = load_env(&[("DOORMAN_SECRET", SECRET), ("DOORMAN_SESSION__BEARER", "maybe")]).unwrap_err();
    assert!(format!("{error:#}").contains("DOORMAN_SESSION__BEARER"));
}

#[test]
fn unknown_variable_gives_one_warning() {
    let loaded = load_env(&[("DOORMAN_SECRET", SECRET), ("DOORMAN_SERVER__PORT", "1")]).unwrap();

    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].contains("DOORMAN_SERVER__PORT"));
}

#[test]
fn test_variables_do_not_configure_the_server() {
    let loaded = load_env(&[("DOORMAN_SECRET", SECRET), ("DOORMAN_TEST_DATABASE_URL", "postgres://x")]).unwrap();
    assert!(loaded.warnings.is_empty());
}

#[test]
fn invalid_values_are_listed_together() {
    let error = load_env(&[
        ("DOORMAN_SECRET", SECRET),
        ("DOORMAN_SERVER__BASE_PATH", "api/auth/"),
        ("DOORMAN_EMAIL_OTP__LENGTH", "4"),
        ("DOORMAN_EMAIL_OTP__EXPIRES_IN", "0s"),
        ("DOORMAN_SERVER__TRUSTED_ORIGINS", "example.com"),
    ])
    .unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains("server.base_path"), "{message}");
    assert!(message.contains("email_otp.length"), "{message}");
    assert!(message.contains("email_otp.expires_in"), "{message}");
    assert!(message.contains("server.trusted_origins"), "{message}");
}

#[test]
fn dev_mode_fills_defaults_and_keeps_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("dev.db").display());
    let options = || LoadOptions { path: Some(empty_file()), dev: true, env: env(&[("DOORMAN_DATABASE__URL", &url)]) };

    let first = load(options()).unwrap();
    let second = load(options()).unwrap();

    assert!(first.config.dev_mode);
    assert!(first.config.anonymous.enabled);
    assert_eq!(first.config.mail.transport, crate::config::MailTransport::Console);
    assert_eq!(first.warnings.len(), 5, "{:?}", first.warnings);
    assert!(dir.path().join("dev.secret").is_file());
    assert_eq!(first.config.secret, second.config.secret, "the generated secret is reused");
}

#[test]
fn dev_mode_keeps_what_the_operator_set() {
    let options = LoadOptions {
        path: Some(empty_file()),
        dev: true,
        env: env(&[("DOORMAN_SECRET", SECRET), ("DOORMAN_ANONYMOUS__ENABLED", "false")]),
    };

    let loaded = load(options).unwrap();

    assert!(!loaded.config.anonymous.enabled);
    assert_eq!(loaded.config.secret.unwrap().expose(), SECRET);
}

#[test]
fn missing_explicit_file_is_an_error() {
    let options = LoadOptions { path: Some("/nonexistent/doorman.toml".into()), dev: false, env: Vec::new() };
    assert!(format!("{:#}", load(options).unwrap_err()).contains("not found"));
}

#[test]
fn redacted_toml_hides_secrets_and_passwords() {
    let mut config = Config::default();
    config.secret = Some(Secret::new(SECRET));
    config.database.url = "sqlite://doorman.db".into();
    config.mail.smtp_url = Some("smtp://user:hunter2@mail.example.com:587".into());
    config.database.url = "postgres://doorman@db.example.com/doorman?sslmode=require&password=hunter3".into();

    let text = redacted_toml(&config).unwrap();

    assert!(!text.contains(SECRET));
    assert!(!text.contains("hunter2"));
    assert!(text.contains("smtp://user:REDACTED@mail.example.com:587"), "{text}");
    assert!(!text.contains("hunter3"), "{text}");
    assert!(text.contains("sslmode=require&password=REDACTED"), "{text}");
}

#[test]
fn failed_load_carries_the_warnings() {
    let error = load_env(&[("DOORMAN_SECRT", SECRET)]).unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains("DOORMAN_SECRT"), "{message}");
    assert!(message.contains("`secret` is missing"), "{message}");
}

#[test]
fn sync_audience_must_differ_from_the_general_audience() {
    let error = load_env(&[
        ("DOORMAN_SECRET", SECRET),
        ("DOORMAN_SERVER__BASE_URL", "https://auth.example.com"),
        ("DOORMAN_SYNC__AUDIENCE", "https://auth.example.com"),
        ("DOORMAN_SYNC__TOKEN_TTL", "2d"),
    ])
    .unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains("sync.audience"), "{message}");
    assert!(message.contains("sync.token_ttl"), "{message}");
}

#[test]
fn public_guests_need_a_bot_check() {
    let public = [("DOORMAN_SECRET", SECRET), ("DOORMAN_SERVER__BASE_URL", "https://auth.example.com"), ("DOORMAN_ANONYMOUS__ENABLED", "true")];

    let error = load_env(&public).unwrap_err();
    assert!(format!("{error:#}").contains("without a bot check"), "{error:#}");

    let mut allowed = public.to_vec();
    allowed.push(("DOORMAN_CAPTCHA__ALLOW_NONE", "true"));
    assert!(load_env(&allowed).is_ok());

    let mut test_secret = public.to_vec();
    test_secret.push(("DOORMAN_CAPTCHA__PROVIDER", "turnstile"));
    test_secret.push(("DOORMAN_CAPTCHA__SECRET", "1x0000000000000000000000000000000AA"));
    let error = load_env(&test_secret).unwrap_err();
    assert!(format!("{error:#}").contains("Cloudflare test secret"), "{error:#}");

    let local = [("DOORMAN_SECRET", SECRET), ("DOORMAN_ANONYMOUS__ENABLED", "true"), ("DOORMAN_CAPTCHA__PROVIDER", "turnstile"), ("DOORMAN_CAPTCHA__SECRET", "1x0000000000000000000000000000000AA")];
    assert!(load_env(&local).is_ok(), "over http both are allowed, for local tests");
}

#[test]
fn providers_need_a_secret() {
    let error = load_env(&[("DOORMAN_SECRET", SECRET), ("DOORMAN_CAPTCHA__PROVIDER", "hcaptcha")]).unwrap_err();
    assert!(format!("{error:#}").contains("captcha.secret"), "{error:#}");
}

#[test]
fn hs256_needs_a_distinct_long_secret_and_a_kid() {
    let error = load_env(&[("DOORMAN_SECRET", SECRET), ("DOORMAN_SYNC__ALG", "HS256"), ("DOORMAN_SYNC__HS256_SECRET", SECRET)]).unwrap_err();

    let message = format!("{error:#}");
    assert!(message.contains("must differ from `secret`"), "{message}");
    assert!(message.contains("sync.hs256_kid"), "{message}");

    use base64::Engine;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET);
    let error = load_env(&[
        ("DOORMAN_SECRET", SECRET),
        ("DOORMAN_SYNC__ALG", "HS256"),
        ("DOORMAN_SYNC__HS256_SECRET", &encoded),
        ("DOORMAN_SYNC__HS256_KID", "k"),
    ])
    .unwrap_err();
    assert!(format!("{error:#}").contains("must differ from `secret`"), "the decoded key must not be the secret");

    let error = load_env(&[("DOORMAN_SECRET", SECRET), ("DOORMAN_SYNC__ALG", "PS512")]).unwrap_err();
    assert!(format!("{error:#}").contains("sync.alg"));
}

fn load_toml(text: &str) -> anyhow::Result<Loaded> {
    let file = empty_file();
    std::fs::write(&file, text).unwrap();
    load(LoadOptions { path: Some(file), dev: false, env: Vec::new() })
}

#[test]
fn sync_tables_are_read_from_toml() {
    let loaded = load_toml(&format!(
        "secret = \"{SECRET}\"\n[sync]\ndatabase_url = \"postgres://app@db/app\"\nmax_operations = 10\n\
         [sync.tables.notes]\ncolumns = [\"title\", \"done\"]\nallow_delete = true\n[sync.tables.tags]\ncolumns = [\"label\"]\n"
    ))
    .unwrap();
    let tables = &loaded.config.sync.tables;
    assert_eq!(tables["notes"].columns, ["title", "done"]);
    assert!(tables["notes"].allow_delete);
    assert!(!tables["tags"].allow_delete, "deletes are refused unless allowed");
    assert_eq!(loaded.config.sync.max_operations, 10);
}

#[test]
fn upload_settings_that_cannot_work_are_refused() {
    let error = load_toml(&format!(
        "secret = \"{SECRET}\"\n[sync]\ndatabase_url = \"mysql://db/app\"\nschema = \"app; drop\"\nmax_operations = 0\nmax_body = \"10B\"\n\
         [sync.tables.notes]\ncolumns = [\"title\", \"id\", \"user_id\", \"bad name\"]\n[sync.tables.\"x-y\"]\ncolumns = []\n"
    ))
    .unwrap_err();

    let message = format!("{error:#}");
    for expected in [
        "must be a postgres:// URL",
        "`sync.schema` must be a plain identifier",
        "lists \"id\"",
        "lists \"user_id\"",
        "entry \"bad name\"",
        "key \"x-y\"",
        "`sync.max_operations` must be at least 1",
        "`sync.max_body` must be at least 1KiB",
    ] {
        assert!(message.contains(expected), "{expected}: {message}");
    }

    let error = load_toml(&format!("secret = \"{SECRET}\"\n[sync]\ndatabase_url = \"postgres://db/app\"\n")).unwrap_err();
    assert!(format!("{error:#}").contains("`sync.tables` lists no table"), "{error:#}");
}

#[test]
fn uploads_without_powersync_url_are_warned() {
    let loaded = load_toml(&format!(
        "secret = \"{SECRET}\"\n[sync]\ndatabase_url = \"postgres://db/app\"\n[sync.tables.notes]\ncolumns = [\"title\"]\n"
    ))
    .unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].contains("without `sync.powersync_url`"), "{:?}", loaded.warnings);
}
