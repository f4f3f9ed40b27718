//! Tests that run the `doorman` binary itself: start-up checks, development mode, logs, shutdown.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::harness::SECRET;

const BINARY: &str = env!("CARGO_BIN_EXE_doorman");

/// A running `doorman serve` whose standard error is collected line by line.
pub struct Process {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// Standard output, where the console mailer prints messages.
    output: Arc<Mutex<Vec<String>>>,
    address: String,
}

impl Process {
    /// Starts `doorman <args>` in `dir` with only `env` (plus `PATH`) and waits for its listening
    /// line.
    pub fn serve(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Self {
        let mut command = Command::new(BINARY);
        command.current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        command.args(["--log-format", "json"]).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("starting doorman");

        let output = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let printed = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                printed.lock().unwrap().push(line);
            }
        });

        let lines = Arc::new(Mutex::new(Vec::new()));
        let (found, address) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(entry) = serde_json::from_str::<Value>(&line) {
                    if entry["fields"]["message"] == "listening" {
                        let _ = found.send(entry["fields"]["address"].as_str().unwrap_or_default().to_string());
                    }
                }
                collected.lock().unwrap().push(line);
            }
        });

        let address = address.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("doorman did not start: {:?}", lines.lock().unwrap());
        });
        Self { child, lines, output, address }
    }

    /// Waits up to five seconds for the console mailer to print a code, and returns it.
    pub fn printed_code(&self) -> String {
        for _ in 0..100 {
            let printed = self.output.lock().unwrap().join("\n");
            if printed.contains("Your sign-in code is ") {
                return crate::smtp::extract_code(&printed);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the console mailer printed no code");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Sends SIGTERM and returns every line logged until the process exited, with its exit status.
    pub fn terminate(mut self) -> (Vec<String>, std::process::ExitStatus) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let status = wait_with_timeout(&mut self.child, Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(100));
        let lines = self.lines.lock().unwrap().clone();
        (lines, status)
    }
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("doorman did not exit in time");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `doorman <args>` to completion and returns (success, stdout, stderr).
fn run(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(BINARY);
    command.current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("running doorman");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn start_without_secret_fails_with_clear_message() {
    let dir = tempfile::tempdir().unwrap();

    let (success, _, stderr) = run(dir.path(), &[("DOORMAN_ANONYMOUS__ENABLED", "true")], &["serve"]);

    assert!(!success);
    assert!(stderr.contains("`secret` is missing"), "{stderr}");
    assert!(stderr.contains("DOORMAN_SECRET"), "{stderr}");
    assert!(!dir.path().join("doorman.db").exists(), "nothing is created before the checks pass");
}

#[test]
fn start_with_short_secret_fails() {
    let dir = tempfile::tempdir().unwrap();

    let (success, _, stderr) = run(dir.path(), &[("DOORMAN_SECRET", "too-short")], &["serve"]);

    assert!(!success);
    assert!(stderr.contains("`secret` is 9 bytes long"), "{stderr}");
}

#[test]
fn secret_file_variable_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret.txt");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();

    let (success, stdout, stderr) = run(dir.path(), &[("DOORMAN_SECRET_FILE", file.to_str().unwrap())], &["config", "check"]);

    assert!(success, "{stderr}");
    assert!(stdout.contains("secret = \"[redacted]\""), "{stdout}");
}

#[test]
fn config_check_redacts_secrets_and_url_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("DOORMAN_SECRET", SECRET),
        ("DOORMAN_RATE_LIMIT__REDIS_URL", "redis://doorman:pa55word-xyz@127.0.0.1:6379/0"),
        ("DOORMAN_SERVER__TRUSTED_ORIGINS", "https://a.example.com, https://b.example.com"),
    ];

    let (success, stdout, stderr) = run(dir.path(), &env, &["config", "check"]);

    assert!(success, "{stderr}");
    assert!(!stdout.contains(SECRET), "{stdout}");
    assert!(!stdout.contains("pa55word-xyz"), "{stdout}");
    assert!(stdout.contains("REDACTED"), "{stdout}");
    assert!(stdout.contains("trusted_origins = [\"https://a.example.com\", \"https://b.example.com\"]"), "{stdout}");
}

#[test]
fn unknown_keys_and_variables_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("doorman.toml"), format!("secret = \"{SECRET}\"\n[server]\nlisten_on = \"x\"\n")).unwrap();

    let (success, _, stderr) = run(dir.path(), &[("DOORMAN_SESSION__COOKIE_NAME", "x")], &["config", "check"]);

    assert!(success, "{stderr}");
    assert!(stderr.contains("server.listen_on"), "{stderr}");
    assert!(stderr.contains("DOORMAN_SESSION__COOKIE_NAME"), "{stderr}");
}

#[test]
fn every_documented_key_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let file = format!(
        r#"
secret = "{SECRET}"
secrets = []
[server]
listen = "127.0.0.1:3000"
base_url = "https://auth.example.com"
base_path = "/v1/api/auth"
trusted_origins = ["tauri://localhost", "*.example.com"]
trusted_proxies = ["10.0.0.0/8"]
trusted_proxy_header = "cf-connecting-ip"
request_timeout = "30s"
max_connections = 512
[database]
url = "sqlite://doorman.db"
max_connections = 4
acquire_timeout = "3s"
statement_timeout = "10s"
[session]
expires_in = "7d"
update_age = "1d"
fresh_age = "1d"
max_age = "30d"
cookie_prefix = "better-auth"
bearer = true
bearer_require_signature = true
[anonymous]
enabled = true
prune_after = "30d"
[email_otp]
length = 8
expires_in = "10m"
max_attempts = 3
[mail]
transport = "smtp"
smtp_url = "smtp://127.0.0.1:2525"
from = "Doorman <auth@example.com>"
subject = "Your sign-in code"
[captcha]
provider = "turnstile"
secret = "0x4AAAAAAA"
verify_url = "https://challenges.cloudflare.com/turnstile/v0/siteverify"
endpoints = ["/sign-in/anonymous"]
expected_action = "login"
allowed_hostnames = ["app.example.com"]
altcha_cost = 5000
challenge_ttl = "5m"
allow_none = false
[rate_limit]
enabled = true
backend = "memory"
redis_url = "redis://127.0.0.1:6379"
rules.sign_in = {{ max = 20, window = "60s" }}
[jwt]
session_header = false
expires_in = "15m"
[sync]
powersync_url = "https://sync.example.com"
base_path = "/powersync"
database_url = "postgres://127.0.0.1/app"
schema = "public"
owner_column = "user_id"
token_ttl = "1h"
audience = "powersync"
alg = "EdDSA"
hs256_kid = "k1"
max_devices = 50
max_body = "4MiB"
max_operations = 1000
[sync.tables.todos]
columns = ["title", "done"]
allow_delete = true
"#
    );
    std::fs::write(dir.path().join("doorman.toml"), file).unwrap();

    let (success, stdout, stderr) = run(dir.path(), &[], &["config", "check"]);

    assert!(success, "{stderr}");
    assert!(!stderr.contains("unknown configuration key"), "{stderr}");
    assert!(stdout.contains("base_path = \"/v1/api/auth\""), "{stdout}");
}

#[test]
fn dev_mode_announces_each_default_and_keeps_its_secret() {
    let dir = tempfile::tempdir().unwrap();

    let process = Process::serve(dir.path(), &[("DOORMAN_SERVER__LISTEN", "127.0.0.1:0")], &["serve", "--dev"]);
    let response = post_empty_json(&process.url("/api/auth/sign-in/anonymous"));
    let (lines, status) = process.terminate();

    assert_eq!(response, 200);
    assert!(status.success());
    let warnings: Vec<&String> = lines.iter().filter(|line| line.contains("development mode")).collect();
    assert_eq!(warnings.len(), 5, "{warnings:#?}");
    let secret = dir.path().join("doorman.secret");
    assert!(dir.path().join("doorman.db").exists());
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&secret).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(std::fs::read_to_string(&secret).unwrap().len() >= 32);
    let wal = dir.path().join("doorman.db-wal");
    let wal_size = std::fs::metadata(&wal).map(|metadata| metadata.len()).unwrap_or(0);
    assert_eq!(wal_size, 0, "a clean stop folds the WAL into the database file");
}

#[test]
fn logs_at_debug_never_contain_tokens_or_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("DOORMAN_SECRET", SECRET),
        ("DOORMAN_ANONYMOUS__ENABLED", "true"),
        ("DOORMAN_SERVER__LISTEN", "127.0.0.1:0"),
        ("RUST_LOG", "debug,doorman=trace"),
    ];
    let process = Process::serve(dir.path(), &env, &["serve"]);

    let client = reqwest::blocking::Client::new();
    let response = client.post(process.url("/api/auth/sign-in/anonymous")).json(&serde_json::json!({})).send().unwrap();
    let signed = response.headers()["set-auth-token"].to_str().unwrap().to_string();
    let cookie = response.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let token = response.json::<Value>().unwrap()["token"].as_str().unwrap().to_string();
    let origin = process.url("");
    client.get(process.url("/api/auth/get-session")).header("cookie", &cookie).send().unwrap();
    client.get(process.url("/api/auth/get-session?token=leak")).bearer_auth(&signed).send().unwrap();
    client.get(process.url("/api/auth/list-sessions")).bearer_auth(&signed).send().unwrap();
    client.post(process.url("/api/auth/update-user")).header("cookie", &cookie).header("origin", &origin)
        .json(&serde_json::json!({ "name": "Ada" })).send().unwrap();
    client.post(process.url("/api/auth/sign-out")).header("cookie", &cookie).header("origin", &origin)
        .json(&serde_json::json!({})).send().unwrap();
    let (lines, status) = process.terminate();

    assert!(status.success());
    assert!(lines.iter().any(|line| line.contains("request finished")), "debug lines were logged");
    let cookie_value = cookie.split_once('=').unwrap().1.to_string();
    let (_, signature) = signed.split_once('.').unwrap();
    for line in &lines {
        for secret in [token.as_str(), signed.as_str(), cookie_value.as_str(), signature, SECRET, "leak"] {
            assert!(!line.contains(secret), "a log line leaks a secret: {line}");
        }
    }
}

#[test]
fn sigterm_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("DOORMAN_SECRET", SECRET), ("DOORMAN_SERVER__LISTEN", "127.0.0.1:0")];
    let process = Process::serve(dir.path(), &env, &["serve"]);

    let (lines, status) = process.terminate();

    assert!(status.success());
    for message in ["SIGTERM received", "store closed", "stopped"] {
        assert!(lines.iter().any(|line| line.contains(message)), "missing {message:?} in {lines:#?}");
    }
}

#[test]
fn migrate_creates_the_schema() {
    let dir = tempfile::tempdir().unwrap();

    let (success, _, stderr) = run(dir.path(), &[("DOORMAN_SECRET", SECRET)], &["migrate"]);

    assert!(success, "{stderr}");
    assert!(dir.path().join("doorman.db").exists());
    assert!(stderr.contains("migrations applied"), "{stderr}");
}

/// Posts `{}` and returns the status code, or 0 when the request failed.
fn post_empty_json(url: &str) -> u16 {
    reqwest::blocking::Client::new()
        .post(url)
        .json(&serde_json::json!({}))
        .send()
        .map(|response| response.status().as_u16())
        .unwrap_or(0)
}

#[test]
fn users_commands_create_show_list_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("DOORMAN_SECRET", SECRET)];

    let (created, stdout, stderr) = run(dir.path(), &env, &["users", "create", "--email", "Ada@Example.com"]);
    assert!(created, "{stderr}");
    assert!(stdout.contains("email:          ada@example.com"), "{stdout}");
    assert!(stdout.contains("email_verified: false"), "{stdout}");
    let id = stdout.lines().find_map(|line| line.strip_prefix("id:")).unwrap().trim().to_string();

    let (duplicate, _, stderr) = run(dir.path(), &env, &["users", "create", "--email", "ada@example.com"]);
    assert!(!duplicate);
    assert!(stderr.contains("already exists"), "{stderr}");

    let (shown, stdout, _) = run(dir.path(), &env, &["users", "show", &id]);
    assert!(shown);
    assert!(stdout.contains(&id));

    let (listed, stdout, _) = run(dir.path(), &env, &["users", "list"]);
    assert!(listed);
    assert!(stdout.lines().any(|line| line.starts_with(&id) && line.contains("false")), "{stdout}");

    let (deleted, stdout, _) = run(dir.path(), &env, &["users", "delete", &id]);
    assert!(deleted);
    assert!(stdout.contains("deleted"));

    let (missing, _, stderr) = run(dir.path(), &env, &["users", "show", &id]);
    assert!(!missing);
    assert!(stderr.contains(&format!("user {id} does not exist")), "{stderr}");
}

#[test]
fn console_mail_prints_codes_that_logs_never_show() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("DOORMAN_SECRET", SECRET),
        ("DOORMAN_MAIL__TRANSPORT", "console"),
        ("DOORMAN_SERVER__LISTEN", "127.0.0.1:0"),
        ("RUST_LOG", "debug,doorman=trace"),
    ];
    let process = Process::serve(dir.path(), &env, &["serve"]);
    let client = reqwest::blocking::Client::new();
    let email = "grace.hopper@example.com";

    let sent = client
        .post(process.url("/api/auth/email-otp/send-verification-otp"))
        .json(&serde_json::json!({ "email": email, "type": "sign-in" }))
        .send()
        .unwrap();
    assert_eq!(sent.status(), 200);
    let code = process.printed_code();
    let wrong = client
        .post(process.url("/api/auth/sign-in/email-otp"))
        .json(&serde_json::json!({ "email": email, "otp": "00000000" }))
        .send()
        .unwrap();
    assert_eq!(wrong.status(), 400);
    let signed_in = client
        .post(process.url("/api/auth/sign-in/email-otp"))
        .json(&serde_json::json!({ "email": email, "otp": code }))
        .send()
        .unwrap();
    assert_eq!(signed_in.status(), 200);
    let token = signed_in.json::<Value>().unwrap()["token"].as_str().unwrap().to_string();
    let (lines, status) = process.terminate();

    assert!(status.success());
    assert!(lines.iter().any(|line| line.contains("signed in with a code")), "debug lines were logged");
    for line in &lines {
        for secret in [code.as_str(), email, "grace.hopper", token.as_str()] {
            assert!(!line.contains(secret), "a log line leaks a secret: {line}");
        }
    }
}

#[test]
fn devices_commands_list_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("DOORMAN_SECRET", SECRET)];
    let (created, stdout, stderr) = run(dir.path(), &env, &["users", "create", "--email", "ada@example.com"]);
    assert!(created, "{stderr}");
    let user = stdout.lines().find_map(|line| line.strip_prefix("id:")).unwrap().trim().to_string();
    let database = dir.path().join("doorman.db");
    let insert = format!(
        "INSERT INTO devices (id, user_id, name, last_seen, created_at) VALUES ('ada-phone', '{user}', 'Phone', 0, 0);"
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", database.display())).await.unwrap();
        sqlx::query(&insert).execute(&pool).await.unwrap();
        pool.close().await;
    });

    let (listed, stdout, _) = run(dir.path(), &env, &["devices", "list", "--user", &user]);
    assert!(listed);
    assert!(stdout.lines().any(|line| line.starts_with("ada-phone") && line.contains("Phone")), "{stdout}");

    let (revoked, stdout, _) = run(dir.path(), &env, &["devices", "revoke", "ada-phone"]);
    assert!(revoked);
    assert!(stdout.contains("revoked"));
    let (again, _, stderr) = run(dir.path(), &env, &["devices", "revoke", "ada-phone"]);
    assert!(!again);
    assert!(stderr.contains("already revoked"), "{stderr}");
}

#[test]
fn keys_commands_rotate_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("DOORMAN_SECRET", SECRET)];

    let (rotated, stdout, stderr) = run(dir.path(), &env, &["keys", "rotate", "--purpose", "sync", "--grace", "0s"]);
    assert!(rotated, "{stderr}");
    assert!(stdout.contains("(sync) signs from"), "{stdout}");

    let (listed, stdout, _) = run(dir.path(), &env, &["keys", "list"]);
    assert!(listed);
    let sync: Vec<&str> = stdout.lines().filter(|line| line.contains(" sync ")).collect();
    assert_eq!(sync.len(), 2, "{stdout}");
    assert_eq!(stdout.lines().filter(|line| line.contains(" general ")).count(), 1, "{stdout}");
    assert!(sync.iter().filter(|line| line.trim_end().ends_with('Z')).count() >= 1, "the old key has a retirement time: {stdout}");
}
