//! How uploaded values are cast to column types, and the per-operation rejections that leave the
//! rest of a batch applied.

use serde_json::json;

use super::fixture::{ada_on_fresh_schema, 
    delete, note, patch, put, rejected_entries, rejection, spawn_app, stored_rejection, SyncSchema, Writer,
};

#[tokio::test]
async fn values_are_cast_to_column_types() {
    let (schema, app, ada) = ada_on_fresh_schema().await;

    let answer = ada
        .upload(
            &app,
            vec![
                put("notes", "c1", json!({ "position": "42", "done": 1, "due_at": "2026-03-01T09:30:00Z", "meta": "{\"a\":1}" })),
                put("notes", "c2", json!({ "done": 0, "due_at": "2026-03-01T10:30:00+01:00", "meta": { "b": [1, 2] } })),
                put("notes", "c3", json!({ "title": 12, "position": 7, "done": true, "meta": [1, "two"] })),
                put("notes", "c4", json!({ "done": 1 })),
                patch("notes", "c4", json!({ "done": false })),
            ],
        )
        .await;

    assert_eq!(answer, json!({ "applied": 5, "rejected": [] }));
    let owner = ada.user_id();
    let expected = vec![
        note("c1", owner, json!({ "position": 42, "done": true, "due_at": "2026-03-01T09:30:00+00:00", "meta": { "a": 1 } })),
        note("c2", owner, json!({ "done": false, "due_at": "2026-03-01T09:30:00+00:00", "meta": { "b": [1, 2] } })),
        note("c3", owner, json!({ "title": "12", "position": 7, "done": true, "meta": [1, "two"] })),
        note("c4", owner, json!({ "done": false })),
    ];
    assert_eq!(schema.rows("notes").await, expected, "a JSON string in a jsonb column is stored as the value it encodes");
}

#[tokio::test]
async fn bad_value_rejects_only_its_operation() {
    let (schema, app, ada) = ada_on_fresh_schema().await;

    let answer = ada
        .upload(
            &app,
            vec![
                put("notes", "a", json!({ "title": "A" })),
                put("notes", "b", json!({ "title": "B", "position": "abc" })),
                put("notes", "c", json!({ "title": "C" })),
                put("notes", "d", json!({ "title": "D", "meta": "not json" })),
                patch("notes", "a", json!({ "position": 5 })),
                patch("notes", "a", json!({ "due_at": "not a date" })),
                put("notes", "e", json!({ "title": "E", "position": -1 })),
                put("notes", "f", json!({ "title": "F" })),
            ],
        )
        .await;

    assert_eq!(answer["applied"], 4);
    let expected = vec![
        rejection(1, "PUT", "notes", "b", "INVALID_VALUE"),
        rejection(3, "PUT", "notes", "d", "INVALID_VALUE"),
        rejection(5, "PATCH", "notes", "a", "INVALID_VALUE"),
        rejection(6, "PUT", "notes", "e", "INVALID_VALUE"),
    ];
    assert_eq!(rejected_entries(&answer), expected, "a cast failure or a CHECK violation rejects one operation");
    let owner = ada.user_id();
    let rows = vec![
        note("a", owner, json!({ "title": "A", "position": 5 })),
        note("c", owner, json!({ "title": "C" })),
        note("f", owner, json!({ "title": "F" })),
    ];
    assert_eq!(schema.rows("notes").await, rows, "operations before and after a rejected one are applied");
    let stored = [("PATCH", "a"), ("PUT", "b"), ("PUT", "d"), ("PUT", "e")]
        .map(|(op, row_id)| stored_rejection(&ada, op, "notes", row_id, "INVALID_VALUE"));
    assert_eq!(schema.rejections().await, stored);
}

#[tokio::test]
async fn per_operation_rejection_codes() {
    let (schema, app, ada) = ada_on_fresh_schema().await;
    ada.upload(&app, vec![put("tags", "t1", json!({ "label": "home" }))]).await;

    let operations = vec![
        put("projects", "p1", json!({ "title": "Unlisted table" })),
        put("upload_rejections", "r1", json!({ "code": "FORGED" })),
        put("notes\"; DROP TABLE tags; --", "x1", json!({})),
        delete("tags", "t1"),
        json!({ "op": "UPSERT", "type": "notes", "id": "n1", "data": {} }),
        json!({ "op": "PUT", "type": "notes", "data": { "title": "No id" } }),
        json!({ "op": "PUT", "type": "notes", "id": 7, "data": {} }),
        json!({ "op": "PUT", "type": "notes", "id": "n2", "data": "title" }),
        put("tags", "t2", json!({})),
        put("notes", "n3", json!({ "title": "Kept" })),
    ];
    let answer = ada.upload(&app, operations).await;

    assert_eq!(answer["applied"], 1);
    let codes: Vec<(usize, String)> = rejected_entries(&answer).into_iter().map(|(index, .., code)| (index, code)).collect();
    let expected: Vec<(usize, String)> = [
        (0, "TABLE_NOT_WRITABLE"),
        (1, "TABLE_NOT_WRITABLE"),
        (2, "TABLE_NOT_WRITABLE"),
        (3, "DELETE_NOT_ALLOWED"),
        (4, "INVALID_VALUE"),
        (5, "INVALID_VALUE"),
        (6, "INVALID_VALUE"),
        (7, "INVALID_VALUE"),
        (8, "INVALID_VALUE"),
    ]
    .map(|(index, code)| (index, code.to_string()))
    .to_vec();
    assert_eq!(codes, expected);
    let entries = rejected_entries(&answer);
    assert_eq!(entries[0], rejection(0, "PUT", "projects", "p1", "TABLE_NOT_WRITABLE"));
    assert_eq!(entries[3], rejection(3, "DELETE", "tags", "t1", "DELETE_NOT_ALLOWED"));
    assert_eq!(entries[8], rejection(8, "PUT", "tags", "t2", "INVALID_VALUE"), "a NOT NULL violation");

    assert_eq!(schema.rows("notes").await, vec![note("n3", ada.user_id(), json!({ "title": "Kept" }))]);
    assert_eq!(schema.rows("tags").await, vec![json!({ "id": "t1", "user_id": ada.user_id(), "label": "home" })]);
    assert_eq!(schema.rejections().await.len(), 9, "every rejection is stored");
}

#[tokio::test]
async fn deferred_constraint_rejects_whole_batch() {
    let schema = SyncSchema::create().await;
    schema
        .execute(&format!(
            "CREATE TABLE {0}.links (id text PRIMARY KEY, user_id text, \
             note_id text REFERENCES {0}.notes (id) DEFERRABLE INITIALLY DEFERRED)",
            schema.name
        ))
        .await;
    let app = spawn_app(&schema, |config| {
        let links = doorman::config::SyncTable { columns: vec!["note_id".into()], allow_delete: true };
        config.sync.tables.insert("links".into(), links);
    })
    .await;
    let ada = Writer::sign_in(&app, "ada@example.com", "ada-laptop").await;

    let answer = ada
        .upload(
            &app,
            vec![
                put("notes", "n1", json!({ "title": "A" })),
                put("notes", "n2", json!({ "position": "abc" })),
                put("links", "l1", json!({ "note_id": "missing" })),
            ],
        )
        .await;

    assert_eq!(answer["applied"], 0, "no operation can commit: {answer}");
    let expected = vec![
        rejection(0, "PUT", "notes", "n1", "INVALID_VALUE"),
        rejection(1, "PUT", "notes", "n2", "INVALID_VALUE"),
        rejection(2, "PUT", "links", "l1", "INVALID_VALUE"),
    ];
    assert_eq!(rejected_entries(&answer), expected);
    let messages: Vec<&str> = answer["rejected"].as_array().unwrap().iter().map(|entry| entry["message"].as_str().unwrap()).collect();
    assert!(messages[0].starts_with("the batch could not commit"), "{}", messages[0]);
    assert!(messages[1].contains("invalid input syntax for type integer"), "the first cause is kept: {}", messages[1]);
    assert!(messages[2].contains("foreign key"), "{}", messages[2]);
    assert!(schema.rows("notes").await.is_empty(), "nothing is written");
    assert_eq!(schema.rejections().await.len(), 3, "the rejections are stored");
}
