//! The start-up checks of the sync tables against the catalog, and the rejection log table that
//! start creates.

use doorman::config::{Config, SyncTable};
use doorman::core::secret::Secret;
use doorman::core::time::{Clock, Millis};
use doorman::Doorman;
use serde_json::json;

use super::fixture::{put, spawn_app, strings, SyncSchema, Writer};
use crate::harness::{TestDatabase, SECRET};

/// Tables that break one start-up rule each: no unique `id`, no `id` column, no owner column.
const BROKEN_TABLES_SQL: &str = "
    CREATE TABLE {schema}.loose (id text, user_id text, body text);
    CREATE TABLE {schema}.keyed (key text PRIMARY KEY, user_id text, body text);
    CREATE TABLE {schema}.orphan (id text PRIMARY KEY, body text);
";

/// Starts Doorman on `schema` after `adjust` and returns the start error with its causes, or
/// `None` when start succeeded.
async fn start_error(schema: &SyncSchema, adjust: impl FnOnce(&mut Config)) -> Option<String> {
    let database = TestDatabase::create().await;
    let mut config = Config { secret: Some(Secret::new(SECRET)), ..Config::default() };
    config.database.url = database.url.clone();
    schema.configure(&mut config);
    adjust(&mut config);

    match Doorman::start_with_clock(config, Clock::manual(Millis(1_796_400_000_000))).await {
        Ok(_) => None,
        Err(error) => Some(format!("{error:#}")),
    }
}

fn table(columns: &[&str]) -> SyncTable {
    SyncTable { columns: strings(columns), allow_delete: true }
}

#[tokio::test]
async fn start_rejects_missing_column() {
    let schema = SyncSchema::create().await;

    let error = start_error(&schema, |config| {
        config.sync.tables.insert("notes".into(), table(&["title", "colour"]));
    })
    .await
    .expect("start fails with a missing column");

    assert!(error.contains("colour"), "the error names the missing column: {error}");
    assert!(error.contains("notes"), "the error names the table: {error}");
}

/// Starts Doorman once per case of (table, listed columns, words the error must contain) and
/// asserts that each start fails with an error naming those words.
async fn assert_start_errors(schema: &SyncSchema, cases: &[(&str, &[&str], &[&str])]) {
    for &(name, columns, named) in cases {
        let error = start_error(schema, |config| {
            config.sync.tables.insert(name.into(), table(columns));
        })
        .await
        .unwrap_or_else(|| panic!("start succeeded with table {name} and columns {columns:?}"));
        for word in named {
            assert!(error.contains(word), "table {name} with {columns:?}: the error names {word}: {error}");
        }
    }
}

#[tokio::test]
async fn start_rejects_invalid_tables() {
    let schema = SyncSchema::create().await;
    schema.execute(&BROKEN_TABLES_SQL.replace("{schema}", &schema.name)).await;

    let cases: [(&str, &[&str], &[&str]); 4] = [
        ("projects", &["title"], &["projects"]),
        ("loose", &["body"], &["loose", "id"]),
        ("keyed", &["body"], &["keyed", "id"]),
        ("orphan", &["body"], &["orphan", "user_id"]),
    ];
    assert_start_errors(&schema, &cases).await;
}

#[tokio::test]
async fn start_rejects_id_or_owner_column() {
    let schema = SyncSchema::create().await;

    let cases: [(&str, &[&str], &[&str]); 2] = [("notes", &["title", "id"], &["notes", "id"]), ("notes", &["title", "user_id"], &["notes", "user_id"])];
    assert_start_errors(&schema, &cases).await;
}

#[tokio::test]
async fn start_creates_rejection_table_once() {
    let schema = SyncSchema::create().await;
    let first = spawn_app(&schema, |_| {}).await;
    let ada = Writer::sign_in(&first, "ada@example.com", "ada-laptop").await;
    let answer = ada.upload(&first, vec![put("projects", "p1", json!({}))]).await;
    assert_eq!(answer["applied"], 0);

    let second = spawn_app(&schema, |_| {}).await;

    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = 'upload_rejections' ORDER BY ordinal_position",
    )
    .bind(&schema.name)
    .fetch_all(&schema.pool)
    .await
    .unwrap();
    let expected = ["id", "user_id", "device_id", "op", "type", "row_id", "code", "message", "created_at"];
    assert_eq!(columns, expected);
    assert_eq!(schema.rejections().await.len(), 1, "a second start keeps the stored rejections");
    drop(second);
}

#[tokio::test]
async fn start_rejects_unknown_database() {
    let schema = SyncSchema::create().await;
    let mut url: url::Url = schema.server.parse().unwrap();
    url.set_path("/doorman_no_such_database");

    let error = start_error(&schema, |config| config.sync.database_url = Some(url.to_string()))
        .await
        .expect("start fails on a database that does not exist");

    assert!(error.contains("sync.database_url"), "the error names the setting: {error}");
    assert!(error.contains("doorman_no_such_database"), "the error names the database: {error}");
}

#[tokio::test]
async fn start_rejects_role_without_privileges() {
    let schema = SyncSchema::create().await;
    let name = schema.name.clone();
    let grants = "GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}; GRANT SELECT, INSERT ON {schema}.notes TO {role}; \
                  GRANT SELECT, INSERT, UPDATE ON {schema}.tags TO {role}";
    let (role, url) = schema.create_role("writer", grants).await;
    let (stranger, stranger_url) = schema.create_role("stranger", "SELECT 1").await;

    let error = start_error(&schema, |config| config.sync.database_url = Some(url)).await;
    let stranger_error = start_error(&schema, |config| config.sync.database_url = Some(stranger_url)).await;
    schema.drop_role(&role).await;
    schema.drop_role(&stranger).await;

    let error = error.expect("start fails without the table privileges");
    assert!(error.contains(&format!("lacks UPDATE on table {name}.notes")), "{error}");
    assert!(error.contains(&format!("lacks DELETE on table {name}.notes")), "notes allow deletes: {error}");
    assert!(!error.contains(&format!("{name}.tags")), "tags need no DELETE, since they allow none: {error}");
    let stranger_error = stranger_error.expect("start fails without USAGE on the schema");
    assert!(stranger_error.contains(&format!("lacks USAGE on schema {name}")), "{stranger_error}");
}
