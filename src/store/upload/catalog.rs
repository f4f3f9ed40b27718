//! The shape of the synced tables, read from PostgreSQL's catalog and checked against the
//! allowlist.

use std::collections::{BTreeMap, HashMap};

use sqlx::PgConnection;

use crate::config::SyncTable;

/// The SQL type of each column of one synced table, as `format_type` prints it.
#[derive(Debug, Clone, Default)]
pub struct TableShape {
    pub types: HashMap<String, String>,
}

impl TableShape {
    /// Returns the type a value of `column` is cast to. Every column passed here was checked when
    /// the catalog was read.
    pub fn type_of(&self, column: &str) -> &str {
        self.types.get(column).map_or("text", String::as_str)
    }
}

/// The synced tables that can take uploads, and the problems of those that cannot.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tables: HashMap<String, TableShape>,
    /// Problems by table name; uploads to these tables wait until an operator fixes them.
    pub broken: BTreeMap<String, Vec<String>>,
}

impl Catalog {
    /// Lists every problem, each naming its table.
    pub fn problems(&self) -> Vec<String> {
        self.broken.values().flatten().cloned().collect()
    }
}

#[derive(sqlx::FromRow)]
struct ColumnRow {
    table_name: String,
    column_name: String,
    sql_type: String,
    /// The type category of `pg_type.typcategory`; `S` for strings.
    category: String,
    /// True for generated columns and `GENERATED ALWAYS` identities, which cannot be written.
    computed: bool,
}

const COLUMNS_SQL: &str = "SELECT c.relname AS table_name, a.attname AS column_name, \
        format_type(a.atttypid, a.atttypmod) AS sql_type, t.typcategory::text AS category, \
        (a.attgenerated <> '' OR a.attidentity = 'a') AS computed \
    FROM pg_attribute a \
    JOIN pg_class c ON c.oid = a.attrelid \
    JOIN pg_namespace n ON n.oid = c.relnamespace \
    JOIN pg_type t ON t.oid = a.atttypid \
    WHERE n.nspname = $1 AND c.relname = ANY($2) AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped";

/// Tables among `$2` with a unique index on `id` alone, which `ON CONFLICT (id)` needs.
const UNIQUE_ID_SQL: &str = "SELECT DISTINCT c.relname \
    FROM pg_index i \
    JOIN pg_class c ON c.oid = i.indrelid \
    JOIN pg_namespace n ON n.oid = c.relnamespace \
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0] \
    WHERE n.nspname = $1 AND c.relname = ANY($2) AND i.indisunique AND i.indnkeyatts = 1 \
        AND i.indpred IS NULL AND i.indexprs IS NULL AND a.attname = 'id'";

/// The privileges of the current role on each table among `$2`. Column grants count for
/// `SELECT`, `INSERT` and `UPDATE`, as PostgreSQL allows them.
const PRIVILEGES_SQL: &str = "SELECT c.relname, \
        has_any_column_privilege(c.oid, 'SELECT'), has_any_column_privilege(c.oid, 'INSERT'), \
        has_any_column_privilege(c.oid, 'UPDATE'), has_table_privilege(c.oid, 'DELETE') \
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
    WHERE n.nspname = $1 AND c.relname = ANY($2) AND c.relkind IN ('r', 'p')";

/// Reasons the synced tables cannot take uploads.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("the synced database does not match `sync.tables`:\n  - {}", .0.join("\n  - "))]
    Mismatch(Vec<String>),
    /// A database error, shown without its source so PostgreSQL's message is not repeated.
    #[error("{0}")]
    Database(sqlx::Error),
    #[error("the synced database did not respond within {0} ms")]
    Timeout(u128),
    /// No connection could be opened, with the cause a direct connection attempt reported.
    #[error("the synced database cannot be reached: {0}")]
    Unreachable(String),
}

impl CatalogError {
    /// Tells whether the database could not be reached, as opposed to a mistake an operator has
    /// to fix, such as a wrong database name, role or password.
    pub fn is_unreachable(&self) -> bool {
        match self {
            CatalogError::Timeout(_) | CatalogError::Unreachable(_) => true,
            CatalogError::Database(error) => crate::store::postgres::is_transient(error),
            CatalogError::Mismatch(_) => false,
        }
    }
}

impl From<sqlx::Error> for CatalogError {
    fn from(error: sqlx::Error) -> Self {
        CatalogError::Database(error)
    }
}

/// Reads the columns and privileges of every listed table of `schema` and checks that uploads
/// can run on them. Each table must exist with an `id` that has a unique constraint of its own and
/// a text owner column. Each listed column must exist and be writable, and the role must hold the
/// privileges the table's operations need.
pub async fn load(
    connection: &mut PgConnection,
    schema: &str,
    owner_column: &str,
    tables: &BTreeMap<String, SyncTable>,
) -> Result<Catalog, sqlx::Error> {
    let names: Vec<&str> = tables.keys().map(String::as_str).collect();
    let rows: Vec<ColumnRow> = sqlx::query_as(COLUMNS_SQL).bind(schema).bind(&names).fetch_all(&mut *connection).await?;
    let unique: Vec<String> = sqlx::query_scalar(UNIQUE_ID_SQL).bind(schema).bind(&names).fetch_all(&mut *connection).await?;
    let privileges: Vec<(String, bool, bool, bool, bool)> =
        sqlx::query_as(PRIVILEGES_SQL).bind(schema).bind(&names).fetch_all(&mut *connection).await?;

    let mut by_table: HashMap<&str, Vec<&ColumnRow>> = HashMap::new();
    for row in &rows {
        by_table.entry(row.table_name.as_str()).or_default().push(row);
    }

    let mut catalog = Catalog::default();
    for (table, rule) in tables {
        let qualified = format!("{schema}.{table}");
        let Some(found) = by_table.get(table.as_str()) else {
            let problem = format!("table {qualified} does not exist, or is a view or foreign table, which cannot take uploads");
            catalog.broken.insert(table.clone(), vec![problem]);
            continue;
        };
        let mut problems = shape_problems(&qualified, found, owner_column, rule);
        if !unique.contains(table) {
            problems.push(format!("table {qualified} needs an `id` column with a primary key or unique constraint of its own"));
        }
        if let Some((_, select, insert, update, delete)) = privileges.iter().find(|row| row.0 == *table) {
            let needed = [("SELECT", *select), ("INSERT", *insert), ("UPDATE", *update), ("DELETE", *delete || !rule.allow_delete)];
            for (privilege, _) in needed.iter().filter(|(_, held)| !held) {
                problems.push(format!("the role of sync.database_url lacks {privilege} on table {qualified}"));
            }
        }

        if problems.is_empty() {
            let types = found.iter().map(|row| (row.column_name.clone(), row.sql_type.clone())).collect();
            catalog.tables.insert(table.clone(), TableShape { types });
        } else {
            catalog.broken.insert(table.clone(), problems);
        }
    }
    Ok(catalog)
}

/// Checks the owner column and the listed columns of one table.
fn shape_problems(qualified: &str, found: &[&ColumnRow], owner_column: &str, rule: &SyncTable) -> Vec<String> {
    let column = |name: &str| found.iter().find(|row| row.column_name == name);
    let mut problems = Vec::new();
    match column(owner_column) {
        None => problems.push(format!("table {qualified} has no owner column `{owner_column}`")),
        Some(owner) if owner.category != "S" => problems.push(format!(
            "owner column {qualified}.{owner_column} is {}; it must be a text type, since it holds Doorman user ids",
            owner.sql_type
        )),
        Some(_) => {}
    }
    for name in &rule.columns {
        if name == "id" || name == owner_column {
            problems.push(format!("column {qualified}.{name} is the id or the owner column, which clients never write"));
            continue;
        }
        match column(name) {
            None => problems.push(format!("column {qualified}.{name} does not exist")),
            Some(row) if row.computed => problems.push(format!("column {qualified}.{name} is generated and cannot be written")),
            Some(_) => {}
        }
    }
    problems
}
