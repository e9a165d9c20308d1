//! Query mode's named parameters: `:name` in a configured `SELECT` becomes
//! the driver's placeholder (`$1` for PostgreSQL, `?` for MySQL and SQLite)
//! and its value is bound, never spliced into the text.
//!
//! The scanner knows enough SQL lexing to leave alone what is not a
//! parameter: string literals (`'..'`, `E'..'`, MySQL's `".."` and
//! backslash escapes), quoted identifiers, comments (`--`, `#` in MySQL,
//! nested `/* */` in PostgreSQL), PostgreSQL dollar quotes and `::` casts,
//! and MySQL's `:=`. Positional placeholders (`$1`, `?`) are rejected so
//! that every value is named in the config, and a second statement after a
//! `;` is rejected so the query is exactly one `SELECT`.

use super::dialect::Dialect;

/// The query with placeholders, and for each placeholder in bind order the
/// parameter it stands for. PostgreSQL numbers each name once (`$1` may
/// occur several times); `?` dialects bind one value per occurrence.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    pub sql: String,
    pub names: Vec<String>,
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

/// Translates `sql`; errors are messages for the `query` key.
pub fn translate(sql: &str, dialect: Dialect) -> Result<Translated, String> {
    let body = strip_trailing_semicolon(sql);
    let bytes = body.as_bytes();
    let mut out = String::with_capacity(body.len() + 16);
    let mut names: Vec<String> = Vec::new();
    let mut copied = 0; // bytes of `body` already copied to `out`
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        let prev = if i > 0 { Some(bytes[i - 1]) } else { None };
        match b {
            b'\'' => {
                let backslash = dialect == Dialect::MySql
                    || (dialect == Dialect::Postgres
                        && matches!(prev, Some(b'E' | b'e'))
                        && !(i >= 2 && is_ident(bytes[i - 2])));
                i = skip_quoted(bytes, i, b'\'', backslash).ok_or("unterminated string literal")?;
            }
            b'"' => {
                let backslash = dialect == Dialect::MySql;
                i = skip_quoted(bytes, i, b'"', backslash).ok_or("unterminated quoted name")?;
            }
            b'`' if dialect != Dialect::Postgres => {
                i = skip_quoted(bytes, i, b'`', false).ok_or("unterminated quoted name")?;
            }
            b'-' if next == Some(b'-') => i = skip_line(bytes, i),
            b'#' if dialect == Dialect::MySql => i = skip_line(bytes, i),
            b'/' if next == Some(b'*') => {
                i = skip_block_comment(bytes, i, dialect == Dialect::Postgres)
                    .ok_or("unterminated /* comment")?;
            }
            b'$' if dialect == Dialect::Postgres && !prev.is_some_and(is_ident) => {
                if next.is_some_and(|n| n.is_ascii_digit()) {
                    return Err(
                        "positional parameters ($1) are not allowed; name them (`:since`) and set their values in `params`"
                            .into(),
                    );
                }
                i = match dollar_tag(bytes, i) {
                    Some(tag) => skip_dollar_quoted(bytes, i, tag)
                        .ok_or("unterminated dollar-quoted string")?,
                    None => i + 1,
                };
            }
            b'?' if dialect != Dialect::Postgres => {
                return Err(
                    "positional parameters (?) are not allowed; name them (`:since`) and set their values in `params`"
                        .into(),
                );
            }
            b'@' if dialect == Dialect::Sqlite => {
                return Err("`@name` parameters are not allowed; write `:name`".into());
            }
            b';' => {
                return Err("the query must be a single statement (a `;` may only end it)".into());
            }
            b':' if next == Some(b':') || next == Some(b'=') => i += 2,
            b':' if next.is_some_and(is_ident_start)
                && !prev.is_some_and(|p| is_ident(p) || p == b':') =>
            {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len()
                    && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_')
                {
                    end += 1;
                }
                let name = &body[start..end];
                out.push_str(&body[copied..i]);
                match dialect {
                    Dialect::Postgres => {
                        let n = match names.iter().position(|x| x == name) {
                            Some(p) => p + 1,
                            None => {
                                names.push(name.to_string());
                                names.len()
                            }
                        };
                        out.push('$');
                        out.push_str(&n.to_string());
                    }
                    Dialect::MySql | Dialect::Sqlite => {
                        names.push(name.to_string());
                        out.push('?');
                    }
                }
                copied = end;
                i = end;
            }
            _ => i += 1,
        }
    }
    out.push_str(&body[copied..]);
    check_is_select(&out)?;
    Ok(Translated { sql: out, names })
}

/// The query without trailing whitespace and one trailing `;`.
fn strip_trailing_semicolon(sql: &str) -> &str {
    let t = sql.trim_end();
    t.strip_suffix(';').map(str::trim_end).unwrap_or(t)
}

/// Index just after the closing quote of the literal opened at `start`.
fn skip_quoted(b: &[u8], start: usize, q: u8, backslash: bool) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        if backslash && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

fn skip_line(b: &[u8], start: usize) -> usize {
    b[start..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |p| start + p + 1)
}

fn skip_block_comment(b: &[u8], start: usize, nested: bool) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < b.len() {
        if b[i] == b'/' && b[i + 1] == b'*' {
            if depth > 0 && !nested {
                i += 2;
                continue;
            }
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return Some(i);
            }
        } else {
            i += 1;
        }
    }
    None
}

/// The tag of a dollar quote starting at `start` (`$$` or `$tag$`), including both `$`.
fn dollar_tag(b: &[u8], start: usize) -> Option<&[u8]> {
    let mut i = start + 1;
    if b.get(i) == Some(&b'$') {
        return Some(&b[start..=i]);
    }
    if !b.get(i).copied().is_some_and(is_ident_start) {
        return None;
    }
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    (b.get(i) == Some(&b'$')).then(|| &b[start..=i])
}

fn skip_dollar_quoted(b: &[u8], start: usize, tag: &[u8]) -> Option<usize> {
    let body = start + tag.len();
    b[body..]
        .windows(tag.len())
        .position(|w| w == tag)
        .map(|p| body + p + tag.len())
}

/// The first word, after comments and parentheses, must be SELECT or WITH.
fn check_is_select(sql: &str) -> Result<(), String> {
    let b = sql.as_bytes();
    let mut i = 0;
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'(') {
            i += 1;
        }
        if b[i..].starts_with(b"--") {
            i = skip_line(b, i);
        } else if b[i..].starts_with(b"/*") {
            i = skip_block_comment(b, i, true).unwrap_or(b.len());
        } else {
            break;
        }
    }
    let word: String = sql[i..]
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    match word.as_str() {
        "SELECT" | "WITH" => Ok(()),
        "" => Err("the query is empty".into()),
        other => Err(format!(
            "the query must be a SELECT (or WITH ... SELECT), not {other}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(sql: &str, d: Dialect) -> (String, Vec<String>) {
        let t = translate(sql, d).unwrap();
        (t.sql, t.names)
    }

    #[test]
    fn postgres_numbers_each_name_once_and_keeps_casts() {
        let (sql, names) = t(
            "SELECT * FROM o WHERE a > :since AND b = :status::text OR c > :since -- :nope\n",
            Dialect::Postgres,
        );
        assert_eq!(
            sql,
            "SELECT * FROM o WHERE a > $1 AND b = $2::text OR c > $1 -- :nope"
        );
        assert_eq!(names, vec!["since", "status"]);
    }

    #[test]
    fn question_mark_dialects_bind_every_occurrence() {
        let (sql, names) = t(
            "SELECT ':x', \"a:b\", `c:d` FROM t WHERE a = :x AND b = :y AND c = :x;",
            Dialect::MySql,
        );
        assert_eq!(
            sql,
            "SELECT ':x', \"a:b\", `c:d` FROM t WHERE a = ? AND b = ? AND c = ?"
        );
        assert_eq!(names, vec!["x", "y", "x"]);
        let (sql, _) = t("SELECT 'it''s :no', x FROM t WHERE y = :y", Dialect::Sqlite);
        assert_eq!(sql, "SELECT 'it''s :no', x FROM t WHERE y = ?");
    }

    #[test]
    fn literals_comments_and_dollar_quotes_are_left_alone() {
        let (sql, names) = t(
            "SELECT $$ :a $$, $tag$ :b $tag$, E'\\' :c', /* :d /* nested */ :e */ x FROM t WHERE arr[1:2] = :f",
            Dialect::Postgres,
        );
        assert_eq!(names, vec!["f"]);
        assert!(sql.ends_with("arr[1:2] = $1"), "{sql}");
        let (sql, names) = t(
            "SELECT 'a\\' :b' # :c\n, @v := 1 FROM t WHERE z = :z",
            Dialect::MySql,
        );
        assert_eq!(names, vec!["z"]);
        assert!(sql.contains("@v := 1"));
    }

    #[test]
    fn positional_placeholders_second_statements_and_non_selects_are_rejected() {
        assert!(translate("SELECT * FROM t WHERE a = $1", Dialect::Postgres)
            .unwrap_err()
            .contains("positional"));
        assert!(translate("SELECT * FROM t WHERE a = ?", Dialect::MySql)
            .unwrap_err()
            .contains("positional"));
        // `?` is a jsonb operator in PostgreSQL.
        assert!(translate("SELECT * FROM t WHERE doc ? 'k'", Dialect::Postgres).is_ok());
        assert!(translate("SELECT 1; DROP TABLE y", Dialect::Sqlite)
            .unwrap_err()
            .contains("single statement"));
        assert!(translate("SELECT 1 ;  ", Dialect::Sqlite).is_ok());
        assert!(translate("DELETE FROM t", Dialect::Postgres)
            .unwrap_err()
            .contains("not DELETE"));
        assert!(translate(
            " /* c */ (WITH x AS (SELECT 1) SELECT * FROM x)",
            Dialect::Postgres
        )
        .is_ok());
        assert!(translate("SELECT 'open", Dialect::Postgres).is_err());
    }
}
