//! The shape of the synced tables, read from PostgreSQL's catalog and checked against the
//! allowlist.

use std::collections::{BTreeMap, HashMap};

use sqlx::PgConnection;

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

/// The synced tables by name.
pub type Catalog = HashMap<String, TableShape>;

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

/// Reasons the synced tables cannot take uploads.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("the synced database does not match `sync.tables`:\n  - {}", .0.join("\n  - "))]
    Mismatch(Vec<String>),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("the synced database did not respond within {0} ms")]
    Timeout(u128),
}

/// Reads the columns of every listed table of `schema` and checks that uploads can run on them.
/// Each table must exist with an `id` that has a unique constraint of its own and a text owner
/// column. Each listed column must exist and be writable.
pub async fn load(
    connection: &mut PgConnection,
    schema: &str,
    owner_column: &str,
    tables: &BTreeMap<String, Vec<String>>,
) -> Result<Catalog, CatalogError> {
    let names: Vec<&str> = tables.keys().map(String::as_str).collect();
    let rows: Vec<ColumnRow> = sqlx::query_as(COLUMNS_SQL).bind(schema).bind(&names).fetch_all(&mut *connection).await?;
    let unique: Vec<String> = sqlx::query_scalar(UNIQUE_ID_SQL).bind(schema).bind(&names).fetch_all(&mut *connection).await?;

    let mut by_table: HashMap<&str, Vec<&ColumnRow>> = HashMap::new();
    for row in &rows {
        by_table.entry(row.table_name.as_str()).or_default().push(row);
    }

    let mut problems = Vec::new();
    let mut catalog = Catalog::new();
    for (table, columns) in tables {
        let Some(found) = by_table.get(table.as_str()) else {
            problems.push(format!("table {schema}.{table} does not exist"));
            continue;
        };
        let column = |name: &str| found.iter().find(|row| row.column_name == name);
        if !unique.contains(table) {
            problems.push(format!("table {schema}.{table} needs an `id` column with a primary key or unique constraint of its own"));
        }
        match column(owner_column) {
            None => problems.push(format!("table {schema}.{table} has no owner column `{owner_column}`")),
            Some(owner) if owner.category != "S" => problems.push(format!(
                "owner column {table}.{owner_column} is {}; it must be a text type, since it holds Doorman user ids",
                owner.sql_type
            )),
            Some(_) => {}
        }
        for name in columns {
            if name == "id" || name == owner_column {
                problems.push(format!("column {table}.{name} is the id or the owner column, which clients never write"));
                continue;
            }
            match column(name) {
                None => problems.push(format!("column {table}.{name} does not exist")),
                Some(row) if row.computed => problems.push(format!("column {table}.{name} is generated and cannot be written")),
                Some(_) => {}
            }
        }
        let types = found.iter().map(|row| (row.column_name.clone(), row.sql_type.clone())).collect();
        catalog.insert(table.clone(), TableShape { types });
    }

    if problems.is_empty() {
        Ok(catalog)
    } else {
        Err(CatalogError::Mismatch(problems))
    }
}
