//! Uploads while the sync database is unreachable or loses its connection in the middle of a
//! batch: the response is 503 with `Retry-After`, and no part of the batch is written.

use std::time::{Duration, Instant};

use reqwest::Response;
use serde_json::{json, Value};

use super::fixture::{ada_on_fresh_schema, 
    batch, note, patch, put, rejected_entries, rejection, spawn_app, until_available, upload, SyncSchema, Writer,
};
use crate::harness::{error_code, header, TestApp};
use crate::proxy::TcpProxy;

/// A trigger that delays any write of a `notes` row titled "slow" by 30 seconds.
const SLOW_TRIGGER_SQL: &str = "
    CREATE FUNCTION {schema}.hold_slow_notes() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.title = 'slow' THEN
            PERFORM pg_sleep(30);
        END IF;
        RETURN NEW;
    END
    $$;
    CREATE TRIGGER hold_slow_notes BEFORE INSERT OR UPDATE ON {schema}.notes
        FOR EACH ROW EXECUTE FUNCTION {schema}.hold_slow_notes();
";

/// Starts an app whose sync database connections pass through `url`.
async fn app_on(schema: &SyncSchema, url: String) -> TestApp {
    spawn_app(schema, |config| config.sync.database_url = Some(url)).await
}

/// Asserts a 503 `SERVICE_UNAVAILABLE` response with a `Retry-After` of whole seconds.
async fn assert_unavailable(response: Response) {
    assert_eq!(response.status(), 503);
    let retry_after = header(&response, "retry-after").expect("a Retry-After header");
    assert!(retry_after.parse::<u64>().is_ok(), "Retry-After is in seconds: {retry_after}");
    assert_eq!(error_code(response).await, "SERVICE_UNAVAILABLE");
}

#[tokio::test]
async fn database_cut_returns_503_then_recovers() {
    let schema = SyncSchema::create().await;
    let (proxy, url) = TcpProxy::in_front_of(&schema.server).await;
    let app = app_on(&schema, url).await;
    let ada = Writer::sign_in(&app, "ada@example.com", "ada-laptop").await;
    ada.upload(&app, vec![put("notes", "a", json!({ "title": "A" }))]).await;
    let creds = ada.session.bearer();
    let body = batch(vec![put("notes", "b", json!({ "title": "B" })), patch("notes", "a", json!({ "title": "A2" }))]);

    proxy.cut();
    let started = Instant::now();
    let during = upload(&app, &creds, Some(&ada.device), &body).await;
    let elapsed = started.elapsed();

    assert!(elapsed < Duration::from_secs(10), "the 503 took {elapsed:?}");
    assert_unavailable(during).await;
    assert_eq!(schema.rows("notes").await, vec![note("a", ada.user_id(), json!({ "title": "A" }))], "nothing is applied");

    proxy.restore();
    let after = until_available(Duration::from_secs(15), || upload(&app, &creds, Some(&ada.device), &body)).await;

    assert_eq!(after.status(), 200);
    let answer: Value = after.json().await.unwrap();
    assert_eq!(answer, json!({ "applied": 2, "rejected": [] }));
    let expected = vec![note("a", ada.user_id(), json!({ "title": "A2" })), note("b", ada.user_id(), json!({ "title": "B" }))];
    assert_eq!(schema.rows("notes").await, expected);
}

#[tokio::test]
async fn start_succeeds_while_sync_database_is_down() {
    let schema = SyncSchema::create().await;
    let (proxy, url) = TcpProxy::in_front_of(&schema.server).await;
    proxy.cut();

    let app = app_on(&schema, url).await;
    let ada = Writer::sign_in(&app, "ada@example.com", "ada-laptop").await;

    let response = upload(&app, &ada.session.bearer(), Some(&ada.device), &batch(vec![put("notes", "a", json!({}))])).await;

    assert_unavailable(response).await;
    assert_eq!(schema.rows("notes").await, Vec::<Value>::new());
}

/// Terminates the sync connection that sleeps in `pg_sleep` on a statement of `schema`, polling
/// for up to 15 seconds. Returns whether one was terminated.
async fn terminate_sleeping_upload(schema: &SyncSchema) -> bool {
    let sql = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'doorman-sync' AND query LIKE '%{}%' AND wait_event = 'PgSleep'",
        schema.name
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let terminated: Vec<bool> = sqlx::query_scalar(&sql).fetch_all(&schema.pool).await.unwrap();
        if terminated.contains(&true) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn connection_killed_mid_batch_applies_nothing() {
    let schema = SyncSchema::create().await;
    schema.execute(&SLOW_TRIGGER_SQL.replace("{schema}", &schema.name)).await;
    let app = spawn_app(&schema, |_| {}).await;
    let ada = Writer::sign_in(&app, "ada@example.com", "ada-laptop").await;
    let creds = ada.session.bearer();
    let mut operations = vec![
        put("notes", "n1", json!({ "title": "n1" })),
        put("notes", "n2", json!({ "title": "n2", "position": "abc" })),
        put("notes", "n3", json!({ "title": "n3" })),
    ];
    let slow = put("notes", "n4", json!({ "title": "slow" }));
    let last = put("notes", "n5", json!({ "title": "n5" }));

    let with_slow = batch([operations.clone(), vec![slow, last.clone()]].concat());
    let (response, terminated) = tokio::join!(upload(&app, &creds, Some(&ada.device), &with_slow), terminate_sleeping_upload(&schema));

    assert!(terminated, "no sync connection slept on the slow row");
    assert_unavailable(response).await;
    assert_eq!(schema.rows("notes").await, Vec::<Value>::new(), "no row of the batch is written");
    assert_eq!(schema.rejections().await, Vec::<Value>::new(), "the rejection of n2 is rolled back with the batch");

    operations.push(last);
    let without_slow = batch(operations);
    let after = until_available(Duration::from_secs(15), || upload(&app, &creds, Some(&ada.device), &without_slow)).await;
    assert_eq!(after.status(), 200);
    let answer: Value = after.json().await.unwrap();
    assert_eq!(answer["applied"], 3);
    assert_eq!(rejected_entries(&answer), vec![rejection(1, "PUT", "notes", "n2", "INVALID_VALUE")]);
    let ids: Vec<Value> = schema.rows("notes").await.iter().map(|row| row["id"].clone()).collect();
    assert_eq!(ids, ["n1", "n3", "n5"].map(|id| json!(id)));
    assert_eq!(schema.rejections().await.len(), 1);
}

#[tokio::test]
async fn renamed_column_pauses_only_its_table() {
    let (schema, app, ada) = ada_on_fresh_schema().await;
    let creds = ada.session.bearer();
    ada.upload(&app, vec![put("tags", "g1", json!({ "label": "a" }))]).await;
    let rename = |from: &str, to: &str| format!("ALTER TABLE {}.tags RENAME COLUMN {from} TO {to}", schema.name);

    schema.execute(&rename("label", "caption")).await;
    let both = batch(vec![put("notes", "n1", json!({ "title": "A" })), patch("tags", "g1", json!({ "label": "b" }))]);
    assert_unavailable(upload(&app, &creds, Some(&ada.device), &both).await).await;
    assert_eq!(schema.rows("notes").await, Vec::<Value>::new(), "nothing of the batch is applied");

    let notes_only = ada.upload(&app, vec![put("notes", "n1", json!({ "title": "A" }))]).await;
    assert_eq!(notes_only, json!({ "applied": 1, "rejected": [] }), "a batch on other tables goes on");
    let tags_only = batch(vec![patch("tags", "g1", json!({ "label": "b" }))]);
    assert_unavailable(upload(&app, &creds, Some(&ada.device), &tags_only).await).await;

    schema.execute(&rename("caption", "label")).await;
    app.handle().reload_sync_catalog().await;
    let fixed = ada.upload(&app, vec![patch("tags", "g1", json!({ "label": "b" }))]).await;
    assert_eq!(fixed, json!({ "applied": 1, "rejected": [] }));
    assert_eq!(schema.rows("tags").await[0]["label"], "b");
}

/// Privileges of a role that may run every upload on the sample tables.
const WRITER_GRANTS: &str = "GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}; \
    GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.notes TO {role}; GRANT SELECT, INSERT, UPDATE ON {schema}.tags TO {role}";

#[tokio::test]
async fn revoked_privilege_pauses_but_row_security_rejects() {
    let schema = SyncSchema::create().await;
    let name = schema.name.clone();
    let (role, url) = schema.create_role("writer", WRITER_GRANTS).await;
    schema
        .execute(&format!(
            "ALTER TABLE {name}.notes ENABLE ROW LEVEL SECURITY; \
             CREATE POLICY titles ON {name}.notes USING (true) WITH CHECK (title IS DISTINCT FROM 'forbidden')"
        ))
        .await;
    let app = spawn_app(&schema, |config| config.sync.database_url = Some(url)).await;
    let ada = Writer::sign_in(&app, "ada@example.com", "ada-laptop").await;
    let creds = ada.session.bearer();

    let policed = ada
        .upload(&app, vec![put("notes", "n1", json!({ "title": "A" })), put("notes", "n2", json!({ "title": "forbidden" }))])
        .await;
    assert_eq!(policed["applied"], 1, "row-level security rejects one operation: {policed}");
    assert_eq!(rejected_entries(&policed), vec![rejection(1, "PUT", "notes", "n2", "INVALID_VALUE")]);

    schema.execute(&format!("REVOKE UPDATE ON {name}.notes FROM {role}")).await;
    let edit = batch(vec![patch("notes", "n1", json!({ "title": "B" }))]);
    let revoked = upload(&app, &creds, Some(&ada.device), &edit).await;
    let tags = ada.upload(&app, vec![put("tags", "g1", json!({ "label": "a" }))]).await;

    schema.execute(&format!("GRANT UPDATE ON {name}.notes TO {role}")).await;
    app.handle().reload_sync_catalog().await;
    let granted = upload(&app, &creds, Some(&ada.device), &edit).await;
    let rows = schema.rows("notes").await;
    drop(app);
    schema.drop_role(&role).await;

    assert_unavailable(revoked).await;
    assert_eq!(tags["applied"], 1, "other tables go on: {tags}");
    assert_eq!(granted.status(), 200);
    assert_eq!(rows, vec![note("n1", ada.user_id(), json!({ "title": "B" }))], "the paused write applies once granted");
}
