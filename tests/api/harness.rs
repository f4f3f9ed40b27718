//! `TestApp`: a Doorman on port 0 with a fresh SQLite file, a manual clock and one typed method per
//! endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use doorman::config::Config;
use doorman::core::secret::Secret;
use doorman::core::time::{Clock, Millis};
use doorman::core::token::{SessionToken, TokenSigner};
use doorman::server::{self, ServeOptions};
use doorman::{Doorman, Handle};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use tokio::sync::oneshot;

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

pub struct TestApp {
    pub address: SocketAddr,
    /// `http://127.0.0.1:<port>`, also the configured base URL.
    pub origin: String,
    pub clock: Clock,
    pub config: Config,
    pub client: reqwest::Client,
    pub db_file: PathBuf,
    handle: Option<Handle>,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a server whose configuration `adjust` may change first.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let db_file = dir.path().join("doorman.db");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding port 0");
        let address = listener.local_addr().unwrap();
        let origin = format!("http://{address}");

        let mut config = Config::default();
        config.secret = Some(Secret::new(SECRET));
        config.database.url = format!("sqlite://{}", db_file.display());
        config.server.base_url = Some(origin.clone());
        config.server.trusted_origins = vec![TRUSTED_ORIGIN.to_string()];
        config.anonymous.enabled = true;
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
            db_file,
            handle: Some(handle),
            stop: Some(stop),
            _dir: dir,
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

    /// A read-only connection pool on the app's SQLite file, for checking rows.
    pub async fn db(&self) -> SqlitePool {
        let options = SqliteConnectOptions::new().filename(&self.db_file).read_only(true);
        SqlitePool::connect_with(options).await.expect("opening the test database")
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

        let options = SqliteConnectOptions::new().filename(&self.db_file).foreign_keys(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        sqlx::query(
            "INSERT INTO users (id, email, email_verified, name, image, is_anonymous, created_at, updated_at) \
             VALUES (?, ?, 1, 'Real', NULL, 0, ?, ?)",
        )
        .bind(&user_id)
        .bind(email)
        .bind(now.0)
        .bind(now.0)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO sessions (id, user_id, token_hash, expires_at, created_at, updated_at, ip_address, user_agent) \
             VALUES (?, ?, ?, ?, ?, ?, '', '')",
        )
        .bind(doorman::core::random::new_id())
        .bind(&user_id)
        .bind(token.hash().0)
        .bind(expires_at.0)
        .bind(now.0)
        .bind(now.0)
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let signer = TokenSigner::new(&Secret::new(SECRET), &[]);
        Signed { token: token.expose().to_string(), signed: signer.sign(&token), user_id }
    }
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
