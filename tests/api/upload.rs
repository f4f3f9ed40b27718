//! `PUT /powersync/upload`: a PowerSync client's write batch applied to the app's PostgreSQL
//! database, in a fresh schema per test. This file covers what a batch writes. The submodules cover
//! value casts and per-operation rejections, request checks, start-up checks and database failures.

mod checks;
mod fixture;
mod outage;
mod start;
mod values;

use doorman::config::SyncTable;
use serde_json::{json, Value};

use fixture::{ada_on_fresh_schema, 
    batch, delete, note, patch, put, rejected_entries, rejection, spawn_app, stored_rejection, strings, upload,
    SyncSchema, Writer,
};

#[tokio::test]
async fn put_inserts_by_cookie_and_bearer() {
    let (schema, app, ada) = ada_on_fresh_schema().await;

    for (label, creds, id) in [("cookie", ada.session.cookie(), "note-cookie"), ("bearer", ada.session.bearer(), "note-bearer")] {
        let body = batch(vec![put("notes", id, json!({ "title": "Milk", "position": 1 }))]);
        let response = upload(&app, &creds, Some(&ada.device), &body).await;
        assert_eq!(response.status(), 200, "{label}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer, json!({ "applied": 1, "rejected": [] }), "{label}");
    }

    let fields = json!({ "title": "Milk", "position": 1 });
    let expected = vec![note("note-bearer", ada.user_id(), fields.clone()), note("note-cookie", ada.user_id(), fields)];
    assert_eq!(schema.rows("notes").await, expected, "unlisted columns keep their defaults");
}

#[tokio::test]
async fn patch_changes_only_given_keys() {
    let (schema, app, ada) = ada_on_fresh_schema().await;
    let original = json!({ "title": "Milk", "position": 2, "done": true, "meta": { "k": "v" } });
    ada.upload(&app, vec![put("notes", "n1", original)]).await;

    let answer = ada
        .upload(
            &app,
            vec![
                patch("notes", "n1", json!({ "title": "Oat milk", "position": null })),
                patch("notes", "missing", json!({ "title": "Ghost" })),
            ],
        )
        .await;

    assert_eq!(answer, json!({ "applied": 2, "rejected": [] }), "a PATCH of a missing row counts as applied");
    let expected = note("n1", ada.user_id(), json!({ "title": "Oat milk", "position": null, "done": true, "meta": { "k": "v" } }));
    assert_eq!(schema.rows("notes").await, vec![expected], "a PATCH creates no row");
}

#[tokio::test]
async fn put_on_own_row_updates_given_keys() {
    let (schema, app, ada) = ada_on_fresh_schema().await;
    ada.upload(&app, vec![put("notes", "n1", json!({ "title": "Milk", "position": 1, "done": true }))]).await;

    let answer = ada.upload(&app, vec![put("notes", "n1", json!({ "title": "Bread" }))]).await;

    assert_eq!(answer, json!({ "applied": 1, "rejected": [] }));
    let expected = note("n1", ada.user_id(), json!({ "title": "Bread", "position": 1, "done": true }));
    assert_eq!(schema.rows("notes").await, vec![expected]);
}

#[tokio::test]
async fn delete_removes_own_row() {
    let (schema, app, ada) = ada_on_fresh_schema().await;
    ada.upload(&app, vec![put("notes", "n1", json!({ "title": "One" })), put("notes", "n2", json!({ "title": "Two" }))]).await;

    let answer = ada.upload(&app, vec![delete("notes", "n1"), delete("notes", "missing")]).await;

    assert_eq!(answer, json!({ "applied": 2, "rejected": [] }), "a DELETE of a missing row succeeds");
    assert_eq!(schema.rows("notes").await, vec![note("n2", ada.user_id(), json!({ "title": "Two" }))]);
}

#[tokio::test]
async fn mixed_batch_applies_in_order() {
    let (schema, app, ada) = ada_on_fresh_schema().await;

    let answer = ada
        .upload(
            &app,
            vec![
                put("notes", "a", json!({ "title": "A", "position": 1 })),
                put("notes", "b", json!({ "title": "B" })),
                patch("notes", "a", json!({ "done": true })),
                delete("notes", "b"),
                put("notes", "c", json!({ "title": "C" })),
                put("tags", "t1", json!({ "label": "home" })),
            ],
        )
        .await;

    assert_eq!(answer, json!({ "applied": 6, "rejected": [] }));
    let expected = vec![
        note("a", ada.user_id(), json!({ "title": "A", "position": 1, "done": true })),
        note("c", ada.user_id(), json!({ "title": "C" })),
    ];
    assert_eq!(schema.rows("notes").await, expected);
    assert_eq!(schema.rows("tags").await, vec![json!({ "id": "t1", "user_id": ada.user_id(), "label": "home" })]);
}

#[tokio::test]
async fn other_users_row_is_not_owner() {
    let (schema, app, ada) = ada_on_fresh_schema().await;
    let bob = Writer::sign_in(&app, "bob@example.com", "bob-phone").await;
    bob.upload(&app, vec![put("notes", "n-bob", json!({ "title": "Bob's", "position": 3 }))]).await;

    let answer = ada
        .upload(
            &app,
            vec![
                put("notes", "n-bob", json!({ "title": "Ada's", "position": 9 })),
                patch("notes", "n-bob", json!({ "title": "Ada's" })),
                delete("notes", "n-bob"),
                put("notes", "n-ada", json!({ "title": "Mine" })),
            ],
        )
        .await;

    assert_eq!(answer["applied"], 1);
    let expected = vec![
        rejection(0, "PUT", "notes", "n-bob", "NOT_OWNER"),
        rejection(1, "PATCH", "notes", "n-bob", "NOT_OWNER"),
        rejection(2, "DELETE", "notes", "n-bob", "NOT_OWNER"),
    ];
    assert_eq!(rejected_entries(&answer), expected);
    let rows = vec![
        note("n-ada", ada.user_id(), json!({ "title": "Mine" })),
        note("n-bob", bob.user_id(), json!({ "title": "Bob's", "position": 3 })),
    ];
    assert_eq!(schema.rows("notes").await, rows, "Bob's row and its owner are unchanged");

    let stored = ["DELETE", "PATCH", "PUT"].map(|op| stored_rejection(&ada, op, "notes", "n-bob", "NOT_OWNER"));
    assert_eq!(schema.rejections().await, stored, "each rejection is stored");
}

#[tokio::test]
async fn server_owned_keys_are_ignored() {
    let (schema, app, ada) = ada_on_fresh_schema().await;
    let intrusive = json!({ "user_id": "intruder", "role": "admin", "id": "other" });

    let mut put_data = intrusive.clone();
    put_data["title"] = json!("T");
    let answer = ada.upload(&app, vec![put("notes", "n1", put_data)]).await;
    assert_eq!(answer, json!({ "applied": 1, "rejected": [] }));
    assert_eq!(schema.rows("notes").await, vec![note("n1", ada.user_id(), json!({ "title": "T" }))], "after the PUT");

    let mut patch_data = intrusive;
    patch_data["position"] = json!(4);
    let answer = ada.upload(&app, vec![patch("notes", "n1", patch_data)]).await;
    assert_eq!(answer, json!({ "applied": 1, "rejected": [] }));
    let expected = note("n1", ada.user_id(), json!({ "title": "T", "position": 4 }));
    assert_eq!(schema.rows("notes").await, vec![expected], "after the PATCH");
}

#[tokio::test]
async fn same_batch_twice_leaves_same_state() {
    let (schema, app, ada) = ada_on_fresh_schema().await;
    let operations = vec![
        put("notes", "a", json!({ "title": "A", "position": 1 })),
        put("notes", "b", json!({ "title": "B" })),
        patch("notes", "a", json!({ "done": true })),
        delete("notes", "b"),
        put("notes", "c", json!({ "meta": "{\"x\":1}" })),
    ];

    let first = ada.upload(&app, operations.clone()).await;
    let after_first = schema.rows("notes").await;
    let second = ada.upload(&app, operations).await;
    let after_second = schema.rows("notes").await;

    assert_eq!(first, json!({ "applied": 5, "rejected": [] }));
    assert_eq!(second, first);
    let expected = vec![
        note("a", ada.user_id(), json!({ "title": "A", "position": 1, "done": true })),
        note("c", ada.user_id(), json!({ "meta": { "x": 1 } })),
    ];
    assert_eq!(after_first, expected);
    assert_eq!(after_second, after_first);
}

#[tokio::test]
async fn owner_column_follows_config() {
    let schema = SyncSchema::create().await;
    schema.execute(&format!("CREATE TABLE {}.items (id text PRIMARY KEY, owner text, name text)", schema.name)).await;
    let app = spawn_app(&schema, |config| {
        config.sync.owner_column = "owner".into();
        let items = SyncTable { columns: strings(&["name"]), allow_delete: true };
        config.sync.tables = [("items".to_string(), items)].into_iter().collect();
    })
    .await;
    let ada = Writer::sign_in(&app, "ada@example.com", "ada-laptop").await;
    let bob = Writer::sign_in(&app, "bob@example.com", "bob-phone").await;
    bob.upload(&app, vec![put("items", "i-bob", json!({ "name": "Bob's" }))]).await;

    let operations = vec![put("items", "i1", json!({ "name": "Mine", "owner": "intruder" })), patch("items", "i-bob", json!({ "name": "Ada's" }))];
    let answer = ada.upload(&app, operations).await;

    assert_eq!(answer["applied"], 1);
    assert_eq!(rejected_entries(&answer), vec![rejection(1, "PATCH", "items", "i-bob", "NOT_OWNER")]);
    let expected = vec![
        json!({ "id": "i-bob", "owner": bob.user_id(), "name": "Bob's" }),
        json!({ "id": "i1", "owner": ada.user_id(), "name": "Mine" }),
    ];
    assert_eq!(schema.rows("items").await, expected);
}
