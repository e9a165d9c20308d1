//! Every sqlx call of the sink, behind plain functions returning boxed
//! futures.
//!
//! sqlx's `Executor<'e>` bounds are higher-ranked; awaited directly inside
//! the `async_trait` methods they defeat the compiler's proof that the
//! method's future is `Send` ("implementation of `Executor` is not general
//! enough"). A concrete `Pin<Box<dyn Future + Send>>` per call hides them.

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;
use std::future::Future;
use std::pin::Pin;

type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, sqlx::Error>> + Send + 'a>>;

pub fn connect(options: &PgConnectOptions) -> Fut<'_, PgConnection> {
    Box::pin(PgConnection::connect_with(options))
}

pub fn close(conn: PgConnection) -> Fut<'static, ()> {
    Box::pin(conn.close())
}

/// A statement without parameters (sent with the simple query protocol,
/// not prepared: DDL, BEGIN, COMMIT).
pub fn simple<'a>(conn: &'a mut PgConnection, sql: &'a str) -> Fut<'a, ()> {
    Box::pin(async move {
        sqlx::Executor::execute(conn, sql).await?;
        Ok(())
    })
}

/// A statement with text parameters `$1..`.
pub fn execute<'a>(conn: &'a mut PgConnection, sql: &'a str, binds: &'a [&'a str]) -> Fut<'a, ()> {
    Box::pin(async move {
        let mut q = sqlx::query(sql);
        for b in binds {
            q = q.bind(*b);
        }
        q.execute(conn).await?;
        Ok(())
    })
}

pub fn txid_current(conn: &mut PgConnection) -> Fut<'_, i64> {
    Box::pin(sqlx::query_scalar("SELECT txid_current()").fetch_one(conn))
}

pub fn txid_status(conn: &mut PgConnection, xid: i64) -> Fut<'_, Option<String>> {
    Box::pin(
        sqlx::query_scalar("SELECT txid_status($1)")
            .bind(xid)
            .fetch_one(conn),
    )
}

/// A query returning one boolean, with one text parameter.
pub fn boolean<'a>(conn: &'a mut PgConnection, sql: &'a str, bind: &'a str) -> Fut<'a, bool> {
    Box::pin(sqlx::query_scalar(sql).bind(bind).fetch_one(conn))
}

/// A query returning rows of two text columns, with one text parameter.
pub fn pairs<'a>(
    conn: &'a mut PgConnection,
    sql: &'a str,
    bind: &'a str,
) -> Fut<'a, Vec<(String, String)>> {
    Box::pin(sqlx::query_as(sql).bind(bind).fetch_all(conn))
}

/// A query returning rows of one `text[]` column, with one text parameter.
pub fn arrays<'a>(
    conn: &'a mut PgConnection,
    sql: &'a str,
    bind: &'a str,
) -> Fut<'a, Vec<Vec<String>>> {
    Box::pin(sqlx::query_scalar(sql).bind(bind).fetch_all(conn))
}
