//! Tests that need PostgreSQL (`DOORMAN_TEST_DATABASE_URL`): schema parity with SQLite, several
//! instances on one database, concurrent migrations, and an outage.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use doorman::config::DatabaseConfig;
use doorman::store::Store;
use serde_json::Value;
use sqlx::{PgPool, Row, SqlitePool};

use crate::harness::{error_code, header, postgres_server, Creds, TestApp, TestDatabase, DATABASE_VARIABLE, SECRET};
use crate::process::Process;
use crate::proxy::TcpProxy;

/// The PostgreSQL server of `DOORMAN_TEST_DATABASE_URL`, or the local default.
fn server_url() -> String {
    postgres_server(DATABASE_VARIABLE)
}

async fn postgres_database() -> TestDatabase {
    TestDatabase::postgres(server_url()).await
}

fn database_config(url: &str) -> DatabaseConfig {
    DatabaseConfig { url: url.to_string(), ..DatabaseConfig::default() }
}

/// (table, column, nullable) for every column, and the column sets of unique indexes.
type Shape = (BTreeSet<(String, String, bool)>, BTreeSet<(String, String)>);

async fn sqlite_shape(url: &str) -> Shape {
    let pool = SqlitePool::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != '_sqlx_migrations'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();

    let mut columns = BTreeSet::new();
    let mut unique = BTreeSet::new();
    for table in tables {
        for row in sqlx::query(&format!("PRAGMA table_info({table})")).fetch_all(&pool).await.unwrap() {
            let nullable = row.get::<i64, _>("notnull") == 0;
            columns.insert((table.clone(), row.get::<String, _>("name"), nullable));
        }
        for index in sqlx::query(&format!("PRAGMA index_list({table})")).fetch_all(&pool).await.unwrap() {
            if index.get::<i64, _>("unique") == 0 {
                continue;
            }
            let name: String = index.get("name");
            let rows = sqlx::query(&format!("PRAGMA index_info({name})")).fetch_all(&pool).await.unwrap();
            let mut names: Vec<String> = rows.iter().map(|row| row.get("name")).collect();
            names.sort();
            unique.insert((table.clone(), names.join(",")));
        }
    }
    pool.close().await;
    (columns, unique)
}

async fn postgres_shape(url: &str) -> Shape {
    let pool = PgPool::connect(url).await.unwrap();
    let rows = sqlx::query(
        "SELECT table_name::text AS table_name, column_name::text AS column_name, is_nullable::text AS is_nullable \
         FROM information_schema.columns WHERE table_schema = current_schema() AND table_name != '_sqlx_migrations'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let columns = rows
        .iter()
        .map(|row| (row.get("table_name"), row.get("column_name"), row.get::<String, _>("is_nullable") == "YES"))
        .collect();

    let rows = sqlx::query(
        "SELECT t.relname::text AS table_name, string_agg(a.attname::text, ',' ORDER BY a.attname::text) AS columns \
         FROM pg_index i \
         JOIN pg_class t ON t.oid = i.indrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(i.indkey) \
         WHERE n.nspname = current_schema() AND i.indisunique AND t.relname != '_sqlx_migrations' \
         GROUP BY t.relname, i.indexrelid",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let unique = rows.iter().map(|row| (row.get("table_name"), row.get("columns"))).collect();
    pool.close().await;
    (columns, unique)
}

#[tokio::test]
async fn postgres_only_schema_parity_with_sqlite() {
    let postgres = postgres_database().await;
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", dir.path().join("parity.db").display());
    for url in [&sqlite_url, &postgres.url] {
        let store = Store::open(&database_config(url)).await.unwrap();
        store.migrate().await.unwrap();
        store.close().await;
    }

    let (sqlite_columns, sqlite_unique) = sqlite_shape(&sqlite_url).await;
    let (postgres_columns, postgres_unique) = postgres_shape(&postgres.url).await;

    assert!(sqlite_columns.len() > 10, "{sqlite_columns:?}");
    assert_eq!(sqlite_columns, postgres_columns, "tables, columns and nullability differ");
    assert!(sqlite_unique.contains(&("sessions".to_string(), "token_hash".to_string())));
    assert_eq!(sqlite_unique, postgres_unique, "unique constraints differ");
}

#[tokio::test]
async fn postgres_only_concurrent_migrations_all_succeed() {
    let database = postgres_database().await;

    let runs = (0..4).map(|_| {
        let url = database.url.clone();
        tokio::spawn(async move {
            let store = Store::open(&database_config(&url)).await.unwrap();
            let result = store.migrate().await;
            store.close().await;
            result
        })
    });
    let results = futures_util::future::join_all(runs).await;

    for result in results {
        result.unwrap().expect("every instance migrates");
    }
    let store = Store::open(&database_config(&database.url)).await.unwrap();
    store.ready().await.expect("the schema is complete");
    store.close().await;
}

#[tokio::test]
async fn postgres_only_two_instances_agree_at_once() {
    let database = postgres_database().await;
    let env = [
        ("DOORMAN_SECRET", SECRET),
        ("DOORMAN_ANONYMOUS__ENABLED", "true"),
        ("DOORMAN_SERVER__LISTEN", "127.0.0.1:0"),
        ("DOORMAN_DATABASE__URL", database.url.as_str()),
    ];
    let first = Process::serve(database.dir(), &env, &["serve"]);
    let second = Process::serve(database.dir(), &env, &["serve"]);
    let client = reqwest::Client::new();

    // A session created on the first instance reads on the second.
    let response = client.post(first.url("/api/auth/sign-in/anonymous")).json(&serde_json::json!({})).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let signed = response.headers()["set-auth-token"].to_str().unwrap().to_string();
    let read = |process: &Process| client.get(process.url("/api/auth/get-session")).bearer_auth(&signed).send();
    let body: Value = read(&second).await.unwrap().json().await.unwrap();
    assert_eq!(body["user"]["isAnonymous"], true);

    // A revocation on the first is refused on the second at once.
    let revoked = client.post(first.url("/api/auth/revoke-sessions")).bearer_auth(&signed).send().await.unwrap();
    assert_eq!(revoked.status(), 200);
    let body: Value = read(&second).await.unwrap().json().await.unwrap();
    assert_eq!(body, Value::Null);
    let listed = client.get(second.url("/api/auth/list-sessions")).bearer_auth(&signed).send().await.unwrap();
    assert_eq!(listed.status(), 401);

    let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys WHERE purpose = 'general'")
        .fetch_one(&PgPool::connect(&database.url).await.unwrap())
        .await
        .unwrap();
    assert_eq!(keys, 1, "instances starting together create one first key");

    let (_, first_status) = first.terminate();
    let (_, second_status) = second.terminate();
    assert!(first_status.success());
    assert!(second_status.success());
}

/// Starts an app whose PostgreSQL connections pass through a proxy the test can cut or freeze,
/// with one-second acquire and statement timeouts.
async fn app_behind_proxy() -> (TestApp, TcpProxy) {
    let database = postgres_database().await;
    let (proxy, proxied) = TcpProxy::in_front_of(&database.url).await;
    let app = TestApp::spawn_on(database, move |config| {
        config.database.url = proxied;
        config.database.acquire_timeout = "1s".parse().unwrap();
        config.database.statement_timeout = "1s".parse().unwrap();
    })
    .await;
    (app, proxy)
}

/// Sends `send` until it returns a status other than 503, for at most `limit`.
async fn until_recovered<F, Fut>(limit: Duration, mut send: F) -> reqwest::Response
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    let deadline = Instant::now() + limit;
    loop {
        let response = send().await;
        assert_ne!(response.status(), 500, "no request may fail with 500");
        if response.status() != 503 || Instant::now() > deadline {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn postgres_only_outage_answers_503_then_recovers() {
    let (app, proxy) = app_behind_proxy().await;
    let guest = app.guest().await;

    proxy.cut();
    let started = Instant::now();
    let during = app.get_session(&guest.bearer()).await;
    let elapsed = started.elapsed();

    assert_eq!(during.status(), 503, "{:?}", during.text().await);
    assert!(elapsed < Duration::from_secs(10), "the 503 took {elapsed:?}");
    assert_eq!(header(&during, "retry-after").as_deref(), Some("1"));
    assert_eq!(error_code(during).await, "SERVICE_UNAVAILABLE");
    let sign_in = app.sign_in_anonymous(&Creds::None).await;
    assert_eq!(sign_in.status(), 503);
    let ready = app.client.get(format!("{}/ready", app.origin)).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let health = app.client.get(format!("{}/health", app.origin)).send().await.unwrap();
    assert_eq!(health.status(), 200);

    proxy.restore();
    let creds = guest.bearer();
    let after = until_recovered(Duration::from_secs(15), || app.get_session(&creds)).await;

    assert_eq!(after.status(), 200);
    let body: Value = after.json().await.unwrap();
    assert_eq!(body["user"]["id"], guest.user_id.as_str(), "the session survived the outage");
    assert_eq!(app.sign_in_anonymous(&Creds::None).await.status(), 200);
    let ready = app.client.get(format!("{}/ready", app.origin)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn postgres_only_partition_answers_503() {
    let (app, proxy) = app_behind_proxy().await;
    let guest = app.guest().await;

    // Pooled connections stay open but go silent, so the next query waits on a reply that never
    // comes. The acquire timeout or the per-use-case deadline turns that into a 503.
    proxy.freeze();
    let started = Instant::now();
    let during = app.get_session(&guest.bearer()).await;
    let elapsed = started.elapsed();

    assert_eq!(during.status(), 503);
    assert!(elapsed < Duration::from_secs(10), "the 503 took {elapsed:?}");
    assert_eq!(header(&during, "retry-after").as_deref(), Some("1"));

    proxy.restore();
    let creds = guest.bearer();
    let after = until_recovered(Duration::from_secs(15), || app.get_session(&creds)).await;
    assert_eq!(after.status(), 200);
}
