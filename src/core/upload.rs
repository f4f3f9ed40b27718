//! Upload batches from sync clients: which operations may run, with which columns and values.
//!
//! This module checks a batch against the table allowlist. The store applies what passes in one
//! transaction and adds the rejections it finds itself (`NOT_OWNER`, `INVALID_VALUE`).

use std::collections::BTreeMap;

use serde_json::Value;
use tracing::info;

use super::auth::Current;
use super::error::CoreError;
use super::sync::DeviceId;
use super::time::{Clock, Millis};
use crate::config::SyncTable;
use crate::store::upload::UploadTarget;

/// Maximum length of a row id, in bytes.
const MAX_ROW_ID_BYTES: usize = 255;
/// Maximum length of client text (op, table, id) kept in a rejection, in characters.
const MAX_ECHO_CHARS: usize = 255;

/// An upload operation's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Insert, or update the listed columns of the caller's row with this id.
    Put,
    /// Update the listed columns present in `data`.
    Patch,
    /// Remove the caller's row with this id.
    Delete,
}

impl OpKind {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "PUT" => Some(Self::Put),
            "PATCH" => Some(Self::Patch),
            "DELETE" => Some(Self::Delete),
            _ => None,
        }
    }

    /// Returns the kind as the wire spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }
}

/// Reason an operation was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionCode {
    TableNotWritable,
    DeleteNotAllowed,
    NotOwner,
    InvalidValue,
}

impl RejectionCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TableNotWritable => "TABLE_NOT_WRITABLE",
            Self::DeleteNotAllowed => "DELETE_NOT_ALLOWED",
            Self::NotOwner => "NOT_OWNER",
            Self::InvalidValue => "INVALID_VALUE",
        }
    }
}

/// One rejected operation, as returned in the response and stored in `upload_rejections`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The operation's position in the batch, from 0.
    pub index: usize,
    /// The operation's `op`, `type` and `id` as the client sent them, when they were strings.
    pub op: Option<String>,
    pub table: Option<String>,
    pub id: Option<String>,
    pub code: RejectionCode,
    pub message: String,
}

impl Rejection {
    /// Builds a rejection of the planned operation `op`.
    pub fn of(op: &PlannedOp, code: RejectionCode, message: impl Into<String>) -> Self {
        Self {
            index: op.index,
            op: Some(op.kind.as_str().to_string()),
            table: Some(op.table.clone()),
            id: Some(op.id.clone()),
            code,
            message: message.into(),
        }
    }
}

/// An operation that passed the allowlist: its table, row id and the writable values of `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedOp {
    pub index: usize,
    pub kind: OpKind,
    pub table: String,
    pub id: String,
    /// Listed columns present in `data`, with their value as text for PostgreSQL to cast to the
    /// column's type; `None` is SQL `NULL`.
    pub values: Vec<(String, Option<String>)>,
}

/// A batch ready for the store: the operations to run and those already rejected.
#[derive(Debug, Clone)]
pub struct Batch {
    pub user_id: String,
    pub device_id: String,
    pub operations: Vec<PlannedOp>,
    pub rejected: Vec<Rejection>,
    pub now: Millis,
}

/// Result of applying a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadOutcome {
    /// Operations carried out, including deletions and updates that found no row.
    pub applied: usize,
    /// Every rejected operation, by index.
    pub rejected: Vec<Rejection>,
}

/// Checks each operation of a batch against the table allowlist.
///
/// Keys of `data` that are not listed columns of the table are dropped: clients upload whole
/// rows, which carry the id, the owner column and server-owned columns.
pub fn plan(operations: &[Value], tables: &BTreeMap<String, SyncTable>) -> (Vec<PlannedOp>, Vec<Rejection>) {
    let mut planned = Vec::with_capacity(operations.len());
    let mut rejected = Vec::new();
    for (index, operation) in operations.iter().enumerate() {
        match plan_one(index, operation, tables) {
            Ok(op) => planned.push(op),
            Err((code, message)) => rejected.push(Rejection {
                index,
                op: echo(operation.get("op")),
                table: echo(operation.get("type")),
                id: echo(operation.get("id")),
                code,
                message: message.to_string(),
            }),
        }
    }
    (planned, rejected)
}

fn plan_one(index: usize, operation: &Value, tables: &BTreeMap<String, SyncTable>) -> Result<PlannedOp, (RejectionCode, &'static str)> {
    use RejectionCode::{DeleteNotAllowed, InvalidValue, TableNotWritable};

    let operation = operation.as_object().ok_or((InvalidValue, "an operation must be a JSON object"))?;
    let kind = operation
        .get("op")
        .and_then(Value::as_str)
        .and_then(OpKind::parse)
        .ok_or((InvalidValue, "op must be PUT, PATCH or DELETE"))?;
    let table = operation.get("type").and_then(Value::as_str).ok_or((InvalidValue, "type must be a table name"))?;
    let id = operation
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty() && id.len() <= MAX_ROW_ID_BYTES)
        .ok_or((InvalidValue, "id must be a string of 1 to 255 bytes"))?;
    let data = match operation.get("data") {
        None | Some(Value::Null) => None,
        Some(Value::Object(data)) => Some(data),
        Some(_) => return Err((InvalidValue, "data must be a JSON object")),
    };

    let rule = tables.get(table).ok_or((TableNotWritable, "this table is not writable"))?;
    if kind == OpKind::Delete && !rule.allow_delete {
        return Err((DeleteNotAllowed, "rows of this table cannot be deleted"));
    }
    let values = match (kind, data) {
        (OpKind::Delete, _) | (_, None) => Vec::new(),
        (_, Some(data)) => data
            .iter()
            .filter(|(column, _)| rule.columns.contains(column))
            .map(|(column, value)| (column.clone(), column_text(value)))
            .collect(),
    };
    Ok(PlannedOp { index, kind, table: table.to_string(), id: id.to_string(), values })
}

/// Converts a JSON value to the text PostgreSQL casts to the column's type. A string is passed as it is,
/// so a JSON string reaching a `json` or `jsonb` column is parsed as JSON; other values are
/// written as JSON text.
fn column_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        Value::Bool(flag) => Some(flag.to_string()),
        other => Some(other.to_string()),
    }
}

/// Copies a client string into a rejection, cut to `MAX_ECHO_CHARS`.
fn echo(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).map(|text| text.chars().take(MAX_ECHO_CHARS).collect())
}

/// Applies upload batches of real users to the synced database.
pub struct Uploader {
    target: UploadTarget,
    tables: BTreeMap<String, SyncTable>,
    clock: Clock,
}

impl Uploader {
    /// Builds the uploader over `target`, with the allowlist `sync.tables`.
    pub fn new(target: UploadTarget, tables: BTreeMap<String, SyncTable>, clock: Clock) -> Self {
        Self { target, tables, clock }
    }

    pub fn target(&self) -> &UploadTarget {
        &self.target
    }

    /// Plans and applies `operations` for the caller on `device`, which the caller checked.
    ///
    /// # Errors
    /// `AnonymousSyncForbidden` for a guest, or a store failure (nothing is applied then).
    pub async fn upload(&self, current: &Current, device: &DeviceId, operations: &[Value]) -> Result<UploadOutcome, CoreError> {
        if current.user.is_anonymous {
            return Err(CoreError::AnonymousSyncForbidden);
        }
        let (planned, rejected) = plan(operations, &self.tables);
        let batch = Batch {
            user_id: current.user.id.clone(),
            device_id: device.as_str().to_string(),
            operations: planned,
            rejected,
            now: self.clock.now(),
        };
        let outcome = self.target.apply(&batch).await?;
        info!(
            user_id = %current.user.id,
            operations = operations.len(),
            applied = outcome.applied,
            rejected = outcome.rejected.len(),
            "upload batch applied"
        );
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tables() -> BTreeMap<String, SyncTable> {
        let notes = SyncTable { columns: ["title", "meta", "done"].map(String::from).into(), allow_delete: true };
        let tags = SyncTable { columns: ["label"].map(String::from).into(), allow_delete: false };
        BTreeMap::from([("notes".to_string(), notes), ("tags".to_string(), tags)])
    }

    #[test]
    fn unlisted_keys_of_data_are_dropped() {
        let operation = json!({"op": "PUT", "type": "notes", "id": "n1",
            "data": {"title": "Hi", "user_id": "someone", "id": "other", "role": "admin", "done": 1, "meta": {"a": [1]}}});
        let (planned, rejected) = plan(&[operation], &tables());
        assert!(rejected.is_empty());
        assert_eq!(planned[0].kind, OpKind::Put);
        assert_eq!(planned[0].id, "n1");
        let values: BTreeMap<_, _> = planned[0].values.iter().cloned().collect();
        assert_eq!(values.len(), 3);
        assert_eq!(values["title"].as_deref(), Some("Hi"));
        assert_eq!(values["done"].as_deref(), Some("1"));
        assert_eq!(values["meta"].as_deref(), Some(r#"{"a":[1]}"#));
    }

    #[test]
    fn strings_pass_unchanged_and_null_stays_null() {
        let operation = json!({"op": "PATCH", "type": "notes", "id": "n1", "data": {"meta": "{\"a\":1}", "title": null}});
        let (planned, _) = plan(&[operation], &tables());
        let values: BTreeMap<_, _> = planned[0].values.iter().cloned().collect();
        assert_eq!(values["meta"].as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(values["title"], None);
    }

    #[test]
    fn each_bad_operation_gets_its_code() {
        let operations = [
            json!({"op": "PUT", "type": "secrets", "id": "s1", "data": {}}),
            json!({"op": "DELETE", "type": "tags", "id": "t1"}),
            json!({"op": "UPSERT", "type": "notes", "id": "n1"}),
            json!({"op": "PUT", "type": "notes", "id": 7}),
            json!({"op": "PUT", "type": "notes", "id": ""}),
            json!({"op": "PATCH", "type": "notes", "id": "n1", "data": [1]}),
            json!("PUT"),
            json!({"op": "DELETE", "type": "notes", "id": "n2"}),
        ];
        let (planned, rejected) = plan(&operations, &tables());
        let codes: Vec<(usize, RejectionCode)> = rejected.iter().map(|r| (r.index, r.code)).collect();
        use RejectionCode::*;
        assert_eq!(
            codes,
            [(0, TableNotWritable), (1, DeleteNotAllowed), (2, InvalidValue), (3, InvalidValue), (4, InvalidValue), (5, InvalidValue), (6, InvalidValue)]
        );
        assert_eq!(planned.len(), 1);
        assert_eq!(planned[0].index, 7);
        assert_eq!(rejected[0].table.as_deref(), Some("secrets"));
        assert_eq!(rejected[3].id, None);
        assert_eq!(rejected[6].op, None);
    }

    #[test]
    fn long_client_text_is_shortened_in_rejections() {
        let operation = json!({"op": "PUT", "type": "x".repeat(1000), "id": "n1"});
        let (_, rejected) = plan(&[operation], &tables());
        assert_eq!(rejected[0].table.as_ref().unwrap().len(), MAX_ECHO_CHARS);
    }
}
