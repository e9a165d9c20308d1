//! PostgreSQL rows read with `COPY (SELECT …) TO STDOUT (FORMAT binary)`.
//!
//! The prepared-statement path pays per row for sqlx's machinery: each
//! `DataRow` message becomes a `PgRow` (a vector of value ranges, the
//! statement's shared column table), handed through its stream; that,
//! not decoding, was most of the sql source's remaining CPU (issue 25).
//! A binary `COPY` carries the same cell bytes (each type's binary send
//! format, which the extended protocol returns too, so the same
//! [`super::pg::PgDecoder`]s read them), and this module cuts them out
//! of the data as it arrives, into one reused cell table.
//!
//! `COPY` takes no parameters: the page's keyset values are written into
//! the statement as typed literals ([`super::dialect::Statement::copy`]),
//! and a query with parameters of its own keeps the prepared path.
//! A `COPY` left unread leaves its connection mid-protocol, which sqlx
//! cannot resume: such a connection is closed, never pooled
//! ([`super::db::ReadConn`]).

use super::pg::PgColumn;
use super::row::{decode_row, DecodedRow, Shape};
use bytes::{Buf, Bytes, BytesMut};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use futures::TryFutureExt;
use sqlx::postgres::PgConnection;
use tributary_core::ConnectorError;

/// The signature binary `COPY` output starts with.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// The signature, the flags field and the header extension's length.
const HEADER: usize = SIGNATURE.len() + 8;
/// Flags bit 16: every row carries its OID (never asked for here).
const WITH_OIDS: u32 = 1 << 16;

/// The statement that streams `select`'s rows in binary.
pub fn copy_statement(select: &str) -> String {
    format!("COPY ({select}) TO STDOUT (FORMAT binary)")
}

/// One row of binary `COPY` output: its bytes and where each cell lies.
#[derive(Debug, Default)]
pub struct CopyRow {
    data: Bytes,
    /// Byte range of each cell in `data`; `None` for NULL.
    cells: Vec<Option<(usize, usize)>>,
}

impl CopyRow {
    /// Cell `i`'s bytes; `None` for NULL.
    pub fn cell(&self, i: usize) -> Result<Option<&[u8]>, String> {
        match self.cells.get(i) {
            Some(Some((start, end))) => Ok(Some(&self.data[*start..*end])),
            Some(None) => Ok(None),
            None => Err(format!("the COPY row has no column {i}")),
        }
    }
}

/// What [`CopyParser::next`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A row, in [`CopyParser::row`].
    Row,
    /// The data so far ends inside the header or a row.
    NeedMore,
    /// The trailer: no more rows.
    End,
}

/// Cuts binary `COPY` output, arriving in chunks of any size, into rows.
/// PostgreSQL sends one row per message, so a row is sliced out of its
/// chunk without a copy; a row split across chunks is joined first.
pub struct CopyParser {
    pending: Bytes,
    columns: usize,
    header_done: bool,
    ended: bool,
    pub row: CopyRow,
}

impl CopyParser {
    pub fn new(columns: usize) -> Self {
        CopyParser {
            pending: Bytes::new(),
            columns,
            header_done: false,
            ended: false,
            row: CopyRow::default(),
        }
    }

    pub fn push(&mut self, chunk: Bytes) {
        if self.pending.is_empty() {
            self.pending = chunk;
        } else {
            let mut joined = BytesMut::with_capacity(self.pending.len() + chunk.len());
            joined.extend_from_slice(&self.pending);
            joined.extend_from_slice(&chunk);
            self.pending = joined.freeze();
        }
    }

    /// The data after the trailer that [`Parsed::End`] reported, if any.
    pub fn has_trailing_data(&self) -> bool {
        self.ended && !self.pending.is_empty()
    }

    pub fn next(&mut self) -> Result<Parsed, String> {
        if self.ended {
            return Ok(Parsed::End);
        }
        if !self.header_done {
            let b = &self.pending[..];
            if b.len() < HEADER {
                return Ok(Parsed::NeedMore);
            }
            if &b[..SIGNATURE.len()] != SIGNATURE {
                return Err("the COPY output is not in binary format (no signature)".into());
            }
            let flags = be_u32(&b[SIGNATURE.len()..]);
            if flags & WITH_OIDS != 0 {
                return Err("the COPY output carries OIDs, which were not asked for".into());
            }
            let extension = be_u32(&b[SIGNATURE.len() + 4..]) as usize;
            if b.len() < HEADER + extension {
                return Ok(Parsed::NeedMore);
            }
            self.pending.advance(HEADER + extension);
            self.header_done = true;
        }
        let b = &self.pending[..];
        if b.len() < 2 {
            return Ok(Parsed::NeedMore);
        }
        let fields = i16::from_be_bytes([b[0], b[1]]);
        if fields == -1 {
            self.pending.advance(2);
            self.ended = true;
            return Ok(Parsed::End);
        }
        if usize::try_from(fields).ok() != Some(self.columns) {
            return Err(format!(
                "a COPY row of {fields} fields, for a statement of {} columns",
                self.columns
            ));
        }
        self.row.cells.clear();
        let mut at = 2;
        for _ in 0..self.columns {
            if b.len() < at + 4 {
                return Ok(Parsed::NeedMore);
            }
            let len = i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            at += 4;
            if len == -1 {
                self.row.cells.push(None);
                continue;
            }
            let len = usize::try_from(len)
                .map_err(|_| format!("a COPY cell of negative length {len}"))?;
            if b.len() < at + len {
                return Ok(Parsed::NeedMore);
            }
            self.row.cells.push(Some((at, at + len)));
            at += len;
        }
        self.row.data = self.pending.split_to(at);
        Ok(Parsed::Row)
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Streams and decodes the rows of `copy` (a [`copy_statement`]) on
/// `conn`. `finished` is set once the server has confirmed the end of
/// the data: until then the connection is mid-`COPY`.
pub fn rows<'a>(
    conn: &'a mut PgConnection,
    copy: &'a str,
    columns: &'a [PgColumn],
    shape: &'a Shape,
    finished: &'a mut bool,
    err: impl Fn(sqlx::Error) -> ConnectorError + Copy + Send + 'a,
) -> BoxStream<'a, Result<DecodedRow, ConnectorError>> {
    *finished = false;
    let chunks = conn
        .copy_out_raw(copy)
        .map_ok(move |s| s.map_err(err))
        .map_err(err)
        .try_flatten_stream()
        .boxed();
    let bad = move |e: String| {
        ConnectorError::fatal(format!(
            "stream `{}`: reading COPY output: {e}",
            shape.stream
        ))
    };
    let state = Reading {
        chunks,
        parser: CopyParser::new(columns.len()),
        buf: BytesMut::new(),
        finished,
        failed: false,
    };
    futures::stream::unfold(state, move |mut s| async move {
        if s.failed {
            return None;
        }
        let item = 'read: loop {
            match s.parser.next() {
                Ok(Parsed::Row) => break decode_row(&s.parser.row, columns, shape, &mut s.buf),
                Ok(Parsed::NeedMore) => match s.chunks.next().await {
                    Some(Ok(chunk)) => s.parser.push(chunk),
                    Some(Err(e)) => break Err(e),
                    None => break Err(bad("the data ended inside a row".into())),
                },
                Ok(Parsed::End) => {
                    // The rest is the server's confirmation; read to its end.
                    while let Some(chunk) = s.chunks.next().await {
                        match chunk {
                            Ok(chunk) => s.parser.push(chunk),
                            Err(e) => break 'read Err(e),
                        }
                    }
                    *s.finished = true;
                    if !s.parser.has_trailing_data() {
                        return None;
                    }
                    break Err(bad("data after the trailer".into()));
                }
                Err(e) => break Err(bad(e)),
            }
        };
        s.failed = item.is_err();
        Some((item, s))
    })
    .boxed()
}

struct Reading<'a> {
    chunks: BoxStream<'a, Result<Bytes, ConnectorError>>,
    parser: CopyParser,
    buf: BytesMut,
    finished: &'a mut bool,
    failed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Vec<u8> {
        let mut h = SIGNATURE.to_vec();
        h.extend_from_slice(&0u32.to_be_bytes());
        h.extend_from_slice(&0u32.to_be_bytes());
        h
    }

    fn row(cells: &[Option<&[u8]>]) -> Vec<u8> {
        let mut r = (cells.len() as i16).to_be_bytes().to_vec();
        for c in cells {
            match c {
                Some(b) => {
                    r.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    r.extend_from_slice(b);
                }
                None => r.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        r
    }

    fn cells(p: &CopyParser) -> Vec<Option<Vec<u8>>> {
        (0..p.columns)
            .map(|i| p.row.cell(i).unwrap().map(<[u8]>::to_vec))
            .collect()
    }

    #[test]
    fn rows_split_anywhere_across_chunks_come_out_whole() {
        let mut data = header();
        data.extend(row(&[Some(b"abc"), None]));
        data.extend(row(&[Some(b""), Some(b"\x00\x01")]));
        data.extend((-1i16).to_be_bytes());
        for cut in 1..data.len() {
            let mut p = CopyParser::new(2);
            let mut got = Vec::new();
            for chunk in [&data[..cut], &data[cut..]] {
                p.push(Bytes::copy_from_slice(chunk));
                while p.next().unwrap() == Parsed::Row {
                    got.push(cells(&p));
                }
            }
            assert_eq!(p.next().unwrap(), Parsed::End, "cut at {cut}");
            assert!(!p.has_trailing_data());
            assert_eq!(
                got,
                vec![
                    vec![Some(b"abc".to_vec()), None],
                    vec![Some(Vec::new()), Some(vec![0, 1])]
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_row_of_another_width_or_text_output_is_an_error() {
        let mut p = CopyParser::new(3);
        let mut data = header();
        data.extend(row(&[Some(b"1")]));
        p.push(data.into());
        assert_eq!(
            p.next().unwrap_err(),
            "a COPY row of 1 fields, for a statement of 3 columns"
        );
        let mut p = CopyParser::new(1);
        p.push(Bytes::from_static(b"1\tabc\n2\tdef\n3\tghi\n4\tjkl\n"));
        assert_eq!(
            p.next().unwrap_err(),
            "the COPY output is not in binary format (no signature)"
        );
    }
}
