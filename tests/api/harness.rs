//! `TestApp`: a Doorman on port 0 with a fresh SQLite file, a manual clock and one typed method per
//! endpoint.

use std::net::SocketAddr;
use std::time::Duration;

use doorman::config::Config;
use doorman::core::secret::Secret;
use doorman::core::time::{Clock, Millis};
use doorman::core::token::{SessionToken, TokenSigner};
use doorman::server::{self, ServeOptions};
use doorman::{Doorman, Handle};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use tokio::sync::oneshot;

use crate::smtp::SmtpSink;

pub const SECRET: &str = "test-secret-test-secret-test-secret-0123456789";
pub const TRUSTED_ORIGIN: &str = "https://app.example.com";

/// How a request presents its session.
#[derive(Debug, Clone)]
pub enum Creds {
    None,
    /// The signed value in the session cookie, with the app's trusted `Origin` on writes.
    Cookie(String),
    /// The signed value as `Authorization: Bearer`.
    Bearer(String),
}

/// A session handed out by a sign-in.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The raw 32-character token.
    pub token: String,
    /// `token.signature`, as `set-auth-token` carries it.
    pub signed: String,
    pub user_id: String,
}

impl Signed {
    pub fn cookie(&self) -> Creds {
        Creds::Cookie(self.signed.clone())
    }

    pub fn bearer(&self) -> Creds {
        Creds::Bearer(self.signed.clone())
    }
}

/// Environment variable naming the PostgreSQL database to test against; SQLite when unset.
pub const DATABASE_VARIABLE: &str = "DOORMAN_TEST_DATABASE_URL";

/// Returns the PostgreSQL server that `variable` names, or the local default that `scripts/test`
/// also uses. The tests that need it fail without a reachable server.
pub fn postgres_server(variable: &str) -> String {
    std::env::var(variable)
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// The database of one test: a fresh SQLite file, or a fresh schema in the PostgreSQL database
/// that `DOORMAN_TEST_DATABASE_URL` names.
pub struct TestDatabase {
    /// The `database.url` Doorman is given.
    pub url: String,
    /// The PostgreSQL server and schema to drop afterwards.
    postgres: Option<(String, String)>,
    dir: tempfile::TempDir,
}

impl TestDatabase {
    pub async fn create() -> Self {
        match std::env::var(DATABASE_VARIABLE) {
            Ok(server) if !server.is_empty() => Self::postgres(server).await,
            _ => {
                let dir = tempfile::tempdir().expect("creating a temp dir");
                let url = format!("sqlite://{}", dir.path().join("doorman.db").display());
                Self { url, postgres: None, dir }
            }
        }
    }

    /// Creates a fresh schema on the PostgreSQL server at `server`.
    pub async fn postgres(server: String) -> Self {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let schema = format!("test_{}", doorman::core::random::alphanumeric(16).to_lowercase());
        let admin = AnyPool::connect(&server)
            .await
            .unwrap_or_else(|error| panic!("connecting to the test PostgreSQL server {server}: {error}"));
        sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&admin).await.expect("creating a test schema");
        admin.close().await;

        let separator = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{separator}options%5Bsearch_path%5D={schema}");
        Self { url, postgres: Some((server, schema)), dir }
    }

    /// A directory that lives as long as the database, for other files of the test.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((server, schema)) = self.postgres.take() else { return };
        // Drop runs inside the test's runtime, which cannot block on a future, so a separate
        // thread with its own runtime removes the schema.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                if let Ok(admin) = AnyPool::connect(&server).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&admin).await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

pub struct TestApp {
    pub address: SocketAddr,
    /// `http://127.0.0.1:<port>`, also the configured base URL.
    pub origin: String,
    pub clock: Clock,
    pub config: Config,
    pub client: reqwest::Client,
    handle: Option<Handle>,
    stop: Option<oneshot::Sender<()>>,
    pub database: TestDatabase,
    /// The SMTP server the app mails its codes to.
    pub mail: SmtpSink,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a server whose configuration `adjust` may change first.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_on(TestDatabase::create().await, adjust).await
    }

    /// Starts a server on `database`, whose configuration `adjust` may change first.
    pub async fn spawn_on(database: TestDatabase, adjust: impl FnOnce(&mut Config)) -> Self {
        let mail = SmtpSink::start().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding port 0");
        let address = listener.local_addr().unwrap();
        let origin = format!("http://{address}");

        let mut config = Config::default();
        config.secret = Some(Secret::new(SECRET));
        config.database.url = database.url.clone();
        config.server.base_url = Some(origin.clone());
        config.server.trusted_origins = vec![TRUSTED_ORIGIN.to_string()];
        config.anonymous.enabled = true;
        config.mail.transport = doorman::config::MailTransport::Smtp;
        config.mail.smtp_url = Some(mail.url());
        config.mail.from = Some("Doorman <auth@example.com>".into());
        adjust(&mut config);

        let clock = Clock::manual(Millis(1_796_400_000_000));
        let (router, handle) = Doorman::start_with_clock(config.clone(), clock.clone()).await.expect("starting doorman");
        let options = ServeOptions {
            header_read_timeout: config.server.header_read_timeout.get(),
            max_connections: config.server.max_connections,
            shutdown_timeout: Duration::from_secs(5),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server::serve(listener, router, options, async {
            let _ = stopped.await;
        }));

        Self {
            address,
            origin,
            clock,
            config,
            client: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            handle: Some(handle),
            stop: Some(stop),
            database,
            mail,
        }
    }

    pub fn handle(&self) -> &Handle {
        self.handle.as_ref().expect("the app is running")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}{path}", self.origin, self.config.server.base_path)
    }

    /// A request to `path` under the base path, carrying `creds`. Cookie requests that change state
    /// carry the server's own origin, as a browser on the same site would.
    pub fn request(&self, method: Method, path: &str, creds: &Creds) -> RequestBuilder {
        let writes = method != Method::GET && method != Method::HEAD;
        let builder = self.client.request(method, self.url(path));
        match creds {
            Creds::None => builder,
            Creds::Cookie(signed) => {
                let cookie = format!("{}={}", self.cookie_name(), encode(signed));
                let builder = builder.header("cookie", cookie);
                if writes { builder.header("origin", &self.origin) } else { builder }
            }
            Creds::Bearer(signed) => builder.header("authorization", format!("Bearer {signed}")),
        }
    }

    pub fn cookie_name(&self) -> String {
        format!("{}.session_token", self.config.session.cookie_prefix)
    }

    pub async fn post_json(&self, path: &str, creds: &Creds, body: Value) -> Response {
        self.request(Method::POST, path, creds).json(&body).send().await.expect("sending a request")
    }

    pub async fn get(&self, path: &str, creds: &Creds) -> Response {
        self.request(Method::GET, path, creds).send().await.expect("sending a request")
    }

    pub async fn sign_in_anonymous(&self, creds: &Creds) -> Response {
        self.post_json("/sign-in/anonymous", creds, serde_json::json!({})).await
    }

    /// Signs a new guest in and returns its session.
    pub async fn guest(&self) -> Signed {
        let response = self.sign_in_anonymous(&Creds::None).await;
        assert_eq!(response.status(), 200, "anonymous sign-in failed");
        let signed = header(&response, "set-auth-token").expect("set-auth-token header");
        let body: Value = response.json().await.unwrap();
        Signed {
            token: body["token"].as_str().unwrap().to_string(),
            signed,
            user_id: body["user"]["id"].as_str().unwrap().to_string(),
        }
    }

    pub async fn send_code(&self, email: &str) -> Response {
        self.post_json("/email-otp/send-verification-otp", &Creds::None, serde_json::json!({ "email": email, "type": "sign-in" }))
            .await
    }

    /// Sends a code to `email` and returns it as the SMTP sink received it.
    pub async fn code_for(&self, email: &str) -> String {
        let seen = self.mail.messages_to(email).len();
        let response = self.send_code(email).await;
        assert_eq!(response.status(), 200, "sending a code failed");
        self.mail.code_after(email, seen).await
    }

    pub async fn sign_in_code(&self, creds: &Creds, email: &str, otp: &str) -> Response {
        self.post_json("/sign-in/email-otp", creds, serde_json::json!({ "email": email, "otp": otp })).await
    }

    /// Signs `email` in with a fresh code, carrying `creds`, and returns the new session.
    pub async fn sign_in_with_code(&self, creds: &Creds, email: &str) -> Signed {
        let code = self.code_for(email).await;
        let response = self.sign_in_code(creds, email, &code).await;
        assert_eq!(response.status(), 200, "code sign-in failed");
        let signed = header(&response, "set-auth-token").expect("set-auth-token header");
        let body: Value = response.json().await.unwrap();
        Signed {
            token: body["token"].as_str().unwrap().to_string(),
            signed,
            user_id: body["user"]["id"].as_str().unwrap().to_string(),
        }
    }

    pub async fn get_session(&self, creds: &Creds) -> Response {
        self.get("/get-session", creds).await
    }

    /// The `get-session` body: `Value::Null` when there is no session.
    pub async fn session_body(&self, creds: &Creds) -> Value {
        let response = self.get_session(creds).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn sign_out(&self, creds: &Creds) -> Response {
        self.post_json("/sign-out", creds, serde_json::json!({})).await
    }

    pub async fn list_sessions(&self, creds: &Creds) -> Response {
        self.get("/list-sessions", creds).await
    }

    pub async fn revoke_session(&self, creds: &Creds, token: &str) -> Response {
        self.post_json("/revoke-session", creds, serde_json::json!({ "token": token })).await
    }

    pub async fn revoke_sessions(&self, creds: &Creds) -> Response {
        self.post_json("/revoke-sessions", creds, serde_json::json!({})).await
    }

    pub async fn revoke_other_sessions(&self, creds: &Creds) -> Response {
        self.post_json("/revoke-other-sessions", creds, serde_json::json!({})).await
    }

    pub async fn update_user(&self, creds: &Creds, body: Value) -> Response {
        self.post_json("/update-user", creds, body).await
    }

    pub async fn delete_user(&self, creds: &Creds) -> Response {
        self.post_json("/delete-user", creds, serde_json::json!({})).await
    }

    pub async fn delete_anonymous_user(&self, creds: &Creds) -> Response {
        self.post_json("/delete-anonymous-user", creds, serde_json::json!({})).await
    }

    /// Returns a connection pool on the app's database, for checking and preparing rows. Queries
    /// use `$1` placeholders, which both engines accept.
    pub async fn db(&self) -> AnyPool {
        sqlx::any::install_default_drivers();
        AnyPoolOptions::new().max_connections(1).connect(&self.database.url).await.expect("opening the test database")
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let pool = self.db().await;
        let count = sqlx::query_scalar(sql).fetch_one(&pool).await.expect("counting rows");
        pool.close().await;
        count
    }

    /// Inserts a real (non-guest) user with one session, as a later sign-in method would leave it,
    /// and returns that session signed with the test secret.
    pub async fn real_user(&self, email: &str) -> Signed {
        let now = self.clock.now();
        let user_id = doorman::core::random::new_id();
        let token = SessionToken::generate();
        let expires_at = now + self.config.session.expires_in.get();

        let pool = self.db().await;
        sqlx::query(
            "INSERT INTO users (id, email, email_verified, name, image, is_anonymous, created_at, updated_at) \
             VALUES ($1, $2, TRUE, 'Real', NULL, FALSE, $3, $4)",
        )
        .bind(&user_id)
        .bind(email)
        .bind(now.0)
        .bind(now.0)
        .execute(&pool)
        .await
        .unwrap();
        insert_session(&pool, &user_id, &token, expires_at.0, now.0).await;
        pool.close().await;

        let signer = TokenSigner::new(&Secret::new(SECRET), &[]);
        Signed { token: token.expose().to_string(), signed: signer.sign(&token), user_id }
    }
}

/// Inserts a session row for `user_id` whose token is `token`.
pub async fn insert_session(pool: &AnyPool, user_id: &str, token: &SessionToken, expires_at: i64, created_at: i64) {
    sqlx::query(
        "INSERT INTO sessions (id, user_id, token_hash, expires_at, created_at, updated_at, ip_address, user_agent) \
         VALUES ($1, $2, $3, $4, $5, $6, '', '')",
    )
    .bind(doorman::core::random::new_id())
    .bind(user_id)
    .bind(token.hash().0)
    .bind(expires_at)
    .bind(created_at)
    .bind(created_at)
    .execute(pool)
    .await
    .unwrap();
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `encodeURIComponent` of a signed value, as the cookie carries it.
pub fn encode(value: &str) -> String {
    value.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
}

pub fn header(response: &Response, name: &str) -> Option<String> {
    response.headers().get(name).map(|value| value.to_str().unwrap().to_string())
}

pub fn set_cookies(response: &Response) -> Vec<String> {
    response.headers().get_all("set-cookie").iter().map(|value| value.to_str().unwrap().to_string()).collect()
}

/// Reads an error body and returns its `code`.
pub async fn error_code(response: Response) -> String {
    let body: Value = response.json().await.expect("error bodies are JSON");
    body["code"].as_str().expect("error bodies carry a code").to_string()
}
