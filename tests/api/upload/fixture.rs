//! Shared setup for the upload tests: a fresh app schema on the sync PostgreSQL server, an app
//! configured to write into it, signed-in writers with registered devices, and readers for rows.

use std::time::{Duration, Instant};

use doorman::config::{Config, SyncTable};
use reqwest::{RequestBuilder, Response};
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::harness::{encode, postgres_server, Creds, Signed, TestApp};
use crate::sync::sync_token;

pub const POWERSYNC_URL: &str = "https://sync.example.com";

/// Environment variable naming the PostgreSQL server of the sync database.
const SYNC_DATABASE_VARIABLE: &str = "DOORMAN_TEST_SYNC_DATABASE_URL";

/// Returns the sync database server: `DOORMAN_TEST_SYNC_DATABASE_URL`, or the local default. The sync
/// database is PostgreSQL on both passes of the suite, also when the auth store is SQLite.
pub fn sync_server_url() -> String {
    postgres_server(SYNC_DATABASE_VARIABLE)
}

/// The sample tables. `notes.role` is server-owned: no configuration lists it.
const TABLES_SQL: &str = "
    CREATE TABLE {schema}.notes (
        id text PRIMARY KEY,
        user_id text,
        title text,
        position integer CHECK (position >= 0),
        done boolean NOT NULL DEFAULT false,
        due_at timestamptz,
        meta jsonb,
        role text NOT NULL DEFAULT 'member'
    );
    CREATE TABLE {schema}.tags (id text PRIMARY KEY, user_id text, label text NOT NULL);
";

/// A fresh schema `sync_<random>` with the sample tables, dropped with the value.
pub struct SyncSchema {
    pub server: String,
    pub name: String,
    /// A pool on the server whose sessions use UTC, so timestamps read back in a fixed form.
    pub pool: PgPool,
}

impl SyncSchema {
    pub async fn create() -> Self {
        let server = sync_server_url();
        let name = format!("sync_{}", doorman::core::random::alphanumeric(16).to_lowercase());
        let options: PgConnectOptions = server.parse().expect("a PostgreSQL URL");
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options.options([("TimeZone", "UTC")]))
            .await
            .unwrap_or_else(|error| panic!("connecting to the sync PostgreSQL server {server}: {error}"));

        let schema = Self { server, name, pool };
        schema.execute(&format!("CREATE SCHEMA {}", schema.name)).await;
        schema.execute(&TABLES_SQL.replace("{schema}", &schema.name)).await;
        schema
    }

    /// Runs `sql`, which may contain several statements.
    pub async fn execute(&self, sql: &str) {
        sqlx::raw_sql(sql).execute(&self.pool).await.unwrap_or_else(|error| panic!("running {sql}: {error}"));
    }

    /// Reads every row of `table` as a JSON object, ordered by id.
    pub async fn rows(&self, table: &str) -> Vec<Value> {
        let sql = format!("SELECT to_jsonb(t)::text FROM {}.{table} t ORDER BY id", self.name);
        let rows: Vec<String> = sqlx::query_scalar(&sql).fetch_all(&self.pool).await.expect("reading rows");
        rows.iter().map(|text| serde_json::from_str(text).unwrap()).collect()
    }

    /// Reads every stored rejection, ordered by row id and op, without `id`, `created_at` and `message`.
    /// Each must carry a non-empty message and a creation time.
    pub async fn rejections(&self) -> Vec<Value> {
        let sql = format!("SELECT to_jsonb(r)::text FROM {}.upload_rejections r ORDER BY row_id, op", self.name);
        let rows: Vec<String> = sqlx::query_scalar(&sql).fetch_all(&self.pool).await.expect("reading rejections");
        rows.iter()
            .map(|text| {
                let mut row: Value = serde_json::from_str(text).unwrap();
                let fields = row.as_object_mut().unwrap();
                assert!(fields.remove("id").is_some_and(|id| id.is_string()), "a stored rejection has an id: {text}");
                assert!(fields.remove("created_at").is_some_and(|at| at.is_string()), "a stored rejection has a time: {text}");
                let message = fields.remove("message").unwrap_or_default();
                assert!(message.as_str().is_some_and(|message| !message.is_empty()), "a stored rejection has a message: {text}");
                row
            })
            .collect()
    }

    /// Creates a login role `<schema>_<suffix>`, runs `grants` with `{role}` and `{schema}` filled
    /// in, and returns the role with a database URL that connects as it.
    pub async fn create_role(&self, suffix: &str, grants: &str) -> (String, String) {
        let role = format!("{}_{suffix}", self.name);
        self.execute(&format!("CREATE ROLE {role} LOGIN")).await;
        self.execute(&grants.replace("{role}", &role).replace("{schema}", &self.name)).await;
        let mut url: url::Url = self.server.parse().unwrap();
        url.set_username(&role).unwrap();
        (role, url.to_string())
    }

    /// Ends the sessions of `role`, then drops what it owns and the role itself.
    pub async fn drop_role(&self, role: &str) {
        self.execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'; DROP OWNED BY {role}; DROP ROLE {role}"
        ))
        .await;
    }

    /// Returns the `sync.tables` of the sample tables: notes are deletable, tags are not.
    pub fn tables() -> std::collections::BTreeMap<String, SyncTable> {
        let notes = SyncTable { columns: strings(&["title", "position", "done", "due_at", "meta"]), allow_delete: true };
        let tags = SyncTable { columns: strings(&["label"]), allow_delete: false };
        [("notes".to_string(), notes), ("tags".to_string(), tags)].into_iter().collect()
    }

    /// Points `config` at this schema with the sample tables.
    pub fn configure(&self, config: &mut Config) {
        config.sync.powersync_url = Some(POWERSYNC_URL.into());
        config.sync.database_url = Some(self.server.clone());
        config.sync.schema = self.name.clone();
        config.sync.tables = Self::tables();
    }
}

impl Drop for SyncSchema {
    fn drop(&mut self) {
        let server = self.server.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on a future, so a separate
        // thread with its own runtime removes the schema.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                if let Ok(admin) = PgPool::connect(&server).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).execute(&admin).await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| item.to_string()).collect()
}

/// Starts an app that writes uploads into `schema`, after `adjust` changes its configuration.
pub async fn spawn_app(schema: &SyncSchema, adjust: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn_with(|config| {
        schema.configure(config);
        adjust(config);
    })
    .await
}

/// Creates a fresh schema, starts an app on it, and signs in Ada with the device `ada-laptop`.
pub async fn ada_on_fresh_schema() -> (SyncSchema, TestApp, Writer) {
    let schema = SyncSchema::create().await;
    let app = spawn_app(&schema, |_| {}).await;
    let ada = Writer::sign_in(&app, "ada@example.com", "ada-laptop").await;
    (schema, app, ada)
}

/// A signed-in real user with one registered device.
pub struct Writer {
    pub session: Signed,
    pub device: String,
}

impl Writer {
    /// Signs `email` in with a code and registers `device` through `GET /powersync/token`.
    pub async fn sign_in(app: &TestApp, email: &str, device: &str) -> Self {
        let session = app.sign_in_with_code(&Creds::None, email).await;
        let response = sync_token(app, &session.bearer(), Some(device)).await;
        assert_eq!(response.status(), 200, "registering {device}: {:?}", response.text().await);
        Self { session, device: device.to_string() }
    }

    pub fn user_id(&self) -> &str {
        &self.session.user_id
    }

    /// Uploads `operations` by bearer from this writer's device and returns the 200 body.
    pub async fn upload(&self, app: &TestApp, operations: Vec<Value>) -> Value {
        let response = upload(app, &self.session.bearer(), Some(&self.device), &batch(operations)).await;
        assert_eq!(response.status(), 200, "upload failed: {:?}", response.text().await);
        response.json().await.unwrap()
    }
}

/// Builds a bare `PUT /powersync/upload`, without credentials or headers.
pub fn upload_request(app: &TestApp) -> RequestBuilder {
    app.client.put(format!("{}/powersync/upload", app.origin))
}

/// Adds `creds` to `request`. A cookie comes with the app's own origin, as a browser on the same
/// site sends it.
pub fn with_creds(app: &TestApp, request: RequestBuilder, creds: &Creds) -> RequestBuilder {
    match creds {
        Creds::None => request,
        Creds::Cookie(signed) => request.header("cookie", cookie(app, signed)).header("origin", &app.origin),
        Creds::Bearer(signed) => request.bearer_auth(signed),
    }
}

/// Formats the `Cookie` header value that carries the session `signed`.
pub fn cookie(app: &TestApp, signed: &str) -> String {
    format!("{}={}", app.cookie_name(), encode(signed))
}

/// Uploads the JSON `body` with `creds` from `device`.
pub async fn upload(app: &TestApp, creds: &Creds, device: Option<&str>, body: &Value) -> Response {
    let mut request = with_creds(app, upload_request(app), creds).json(body);
    if let Some(device) = device {
        request = request.header("x-device-id", device);
    }
    request.send().await.expect("sending an upload")
}

/// Sends `send` until it returns a status other than 503, for at most `limit`.
pub async fn until_available<F, Fut>(limit: Duration, mut send: F) -> Response
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let deadline = Instant::now() + limit;
    loop {
        let response = send().await;
        if response.status() != 503 || Instant::now() > deadline {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn batch(operations: Vec<Value>) -> Value {
    json!({ "operations": operations })
}

pub fn put(table: &str, id: &str, data: Value) -> Value {
    json!({ "op": "PUT", "type": table, "id": id, "data": data })
}

pub fn patch(table: &str, id: &str, data: Value) -> Value {
    json!({ "op": "PATCH", "type": table, "id": id, "data": data })
}

pub fn delete(table: &str, id: &str) -> Value {
    json!({ "op": "DELETE", "type": table, "id": id })
}

/// Builds a `notes` row as [`SyncSchema::rows`] reads it: the column defaults, then `fields`.
pub fn note(id: &str, owner: &str, fields: Value) -> Value {
    let mut row = json!({
        "id": id, "user_id": owner, "title": null, "position": null,
        "done": false, "due_at": null, "meta": null, "role": "member",
    });
    for (key, value) in fields.as_object().expect("fields are an object") {
        row[key] = value.clone();
    }
    row
}

/// One entry of an upload response's `rejected` list without its message: index, op, type, id
/// and code.
pub type Rejection = (usize, String, String, String, String);

/// Builds a row of `upload_rejections` as [`SyncSchema::rejections`] reads it.
pub fn stored_rejection(writer: &Writer, op: &str, table: &str, row_id: &str, code: &str) -> Value {
    json!({
        "user_id": writer.user_id(), "device_id": writer.device, "op": op,
        "type": table, "row_id": row_id, "code": code,
    })
}

pub fn rejection(index: usize, op: &str, table: &str, id: &str, code: &str) -> Rejection {
    (index, op.into(), table.into(), id.into(), code.into())
}

/// Reads the `rejected` entries of an upload response. Each must carry a non-empty message. A missing or
/// non-string field reads as "".
pub fn rejected_entries(body: &Value) -> Vec<Rejection> {
    let entries = body["rejected"].as_array().expect("`rejected` is an array");
    entries
        .iter()
        .map(|entry| {
            let message = entry["message"].as_str().unwrap_or_default();
            assert!(!message.is_empty(), "a rejection carries a message: {entry}");
            let text = |key: &str| entry[key].as_str().unwrap_or_default().to_string();
            (entry["index"].as_u64().expect("a numeric index") as usize, text("op"), text("type"), text("id"), text("code"))
        })
        .collect()
}
