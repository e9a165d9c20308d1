//! Scratch space in the real PostgreSQL the tests run against
//! (`TRIBUTARY_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`, started by `scripts/services`).
//! A missing server fails the test that asked for it: nothing skips.

use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;

pub fn url() -> String {
    std::env::var("TRIBUTARY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Connection options for [`url`] with the session in UTC, so timestamps
/// read back as text compare exactly.
pub fn options() -> PgConnectOptions {
    url()
        .parse::<PgConnectOptions>()
        .expect("TRIBUTARY_TEST_POSTGRES_URL is a postgres:// URL")
        .options([("TimeZone", "UTC")])
}

pub async fn connect() -> PgConnection {
    PgConnection::connect_with(&options())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL must be running at {} (scripts/services starts it; or set TRIBUTARY_TEST_POSTGRES_URL): {e}",
                url()
            )
        })
}

/// A schema name no other test (in this or another process) uses.
pub fn unique_schema(prefix: &str) -> String {
    crate::unique_name(prefix, '_')
}

/// The rows of a query as JSON objects (timestamps as ISO 8601 text).
pub async fn rows(conn: &mut PgConnection, sql: &str) -> Vec<Value> {
    let text: String = sqlx::query_scalar(&format!(
        "SELECT coalesce(json_agg(x), '[]')::text FROM ({sql}) x"
    ))
    .fetch_one(conn)
    .await
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
    match serde_json::from_str(&text) {
        Ok(Value::Array(rows)) => rows,
        other => panic!("json_agg gave {other:?}"),
    }
}

/// Drops `schema` and everything in it, from a thread of its own so it works
/// inside or outside a runtime (a test's `Drop`).
pub fn drop_schema(schema: &str) {
    let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            if let Ok(mut c) = PgConnection::connect_with(&options()).await {
                let _ = sqlx::raw_sql(&sql).execute(&mut c).await;
            }
        })
    })
    .join();
}

/// A scratch schema of its own for one test, dropped on drop; its queries
/// run on a private runtime, so a synchronous test (one that runs the
/// binary) can use it.
pub struct Scratch {
    pub schema: String,
    rt: tokio::runtime::Runtime,
}

impl Scratch {
    /// Creates the schema, named from `prefix` ([`unique_schema`]).
    pub fn new(prefix: &str) -> Scratch {
        let db = Scratch {
            schema: unique_schema(prefix),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime"),
        };
        db.exec(&format!("CREATE SCHEMA \"{}\"", db.schema));
        db
    }

    pub fn exec(&self, sql: &str) {
        self.rt.block_on(async {
            let mut c = connect().await;
            sqlx::raw_sql(sql)
                .execute(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        })
    }

    /// The rows of a query as JSON objects.
    pub fn rows(&self, sql: &str) -> Vec<Value> {
        self.rt
            .block_on(async { rows(&mut connect().await, sql).await })
    }

    /// `"schema"."name"`.
    pub fn table(&self, name: &str) -> String {
        format!("\"{}\".\"{name}\"", self.schema)
    }

    /// The `[sink]` table writing into this schema, with `extra` lines.
    pub fn sink(&self, extra: &str) -> String {
        format!(
            "[sink]\ntype = \"postgres\"\nurl = \"{}\"\nschema = \"{}\"\n{extra}\n",
            url(),
            self.schema
        )
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        drop_schema(&self.schema);
    }
}
