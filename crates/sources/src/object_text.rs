//! Records written as JSON object text straight from their fields, for the
//! sources whose records are rows (sql, CSV): the text is what a
//! `serde_json` map of the same fields would serialize to (fields sorted
//! by name, of equal names the last), without building the map, dropping
//! it and serializing it again in the sink (issue 25).

use bytes::{BufMut, Bytes, BytesMut};

/// The field names of a row layout, resolved once per header or statement.
#[derive(Debug, Clone, Default)]
pub struct ObjectFields {
    /// Column indices in the order of their names; of columns sharing a
    /// name, only the last, as a map built from them would hold.
    order: Vec<usize>,
    /// Per column: its name as a JSON string and a colon (`"id":`), escaped
    /// once instead of once per cell.
    quoted: Vec<Vec<u8>>,
    names: Vec<String>,
}

impl ObjectFields {
    pub fn new(names: &[String]) -> ObjectFields {
        let mut order: Vec<usize> = (0..names.len()).collect();
        order.sort_by(|a, b| names[*a].cmp(&names[*b]));
        // The sort is stable: of equal names the last comes last; keep it.
        let mut kept: Vec<usize> = Vec::with_capacity(order.len());
        for i in order {
            match kept.last_mut() {
                Some(last) if names[*last] == names[i] => *last = i,
                _ => kept.push(i),
            }
        }
        let quoted = names
            .iter()
            .map(|n| {
                // A string always serializes.
                let mut q = serde_json::to_vec(n).unwrap_or_default();
                q.push(b':');
                q
            })
            .collect();
        ObjectFields {
            order: kept,
            quoted,
            names: names.to_vec(),
        }
    }

    /// How many columns the layout has (fields in the text may be fewer).
    pub fn columns(&self) -> usize {
        self.names.len()
    }

    /// The name of column `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// Whether column `i` is written (not shadowed by a later one of its name).
    pub fn is_written(&self, i: usize) -> bool {
        self.order.contains(&i)
    }

    /// The column a field name stands for in the text.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.order.iter().copied().find(|&i| self.names[i] == name)
    }

    /// Writes `{"a":…,"b":…}` into `buf`, each value by `cell(column, buf)`,
    /// and splits it off as its own `Bytes`. Rows share `buf`'s allocations
    /// (one per [`ROW_CHUNK`], freed when the last row in it is).
    pub fn write<E>(
        &self,
        buf: &mut BytesMut,
        mut cell: impl FnMut(usize, &mut BytesMut) -> Result<(), E>,
    ) -> Result<Bytes, E> {
        if buf.capacity() - buf.len() < ROW_CHUNK / 16 {
            buf.reserve(ROW_CHUNK);
        }
        buf.put_u8(b'{');
        for (n, &i) in self.order.iter().enumerate() {
            if n > 0 {
                buf.put_u8(b',');
            }
            buf.extend_from_slice(&self.quoted[i]);
            if let Err(e) = cell(i, buf) {
                buf.clear();
                return Err(e);
            }
        }
        buf.put_u8(b'}');
        Ok(buf.split().freeze())
    }
}

/// Room made in a row buffer at a time.
pub const ROW_CHUNK: usize = 64 * 1024;

/// Appends `s`, which the caller has checked is UTF-8, as a JSON string,
/// escaped byte for byte as `serde_json` escapes (`\"`, `\\`, the short
/// forms of control characters, `\u00xx` for the others): bytes of
/// multi-byte characters are never escaped, so checking a whole CSV record
/// once stands for checking each of its fields (a tenth of the CSV path's
/// time went into validating each field twice, issue 25).
pub fn write_utf8_str(s: &[u8], buf: &mut BytesMut) {
    debug_assert!(std::str::from_utf8(s).is_ok());
    buf.reserve(s.len() + 2);
    buf.put_u8(b'"');
    let mut clean = 0;
    loop {
        // Clean runs skipped a word at a time (byte by byte, this loop was
        // an eighth of the CSV path).
        let i = string_stop(s, clean);
        let Some(&b) = s.get(i) else { break };
        buf.extend_from_slice(&s[clean..i]);
        clean = i + 1;
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => b"",
        };
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            buf.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]);
        } else {
            buf.extend_from_slice(short);
        }
    }
    buf.extend_from_slice(&s[clean..]);
    buf.put_u8(b'"');
}

/// Bytes a checked string scan stops at: the closing quote, an escape, and
/// the control characters JSON does not allow raw inside a string.
pub(crate) static STRING_STOPS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// The first byte from `at` on that a string scan must look at: a quote, a
/// backslash or a control character (`text.len()` if none). Eight bytes at
/// a time, as one word: runs of ordinary bytes are most of a page, and most
/// strings are names and short values.
pub(crate) fn string_stop(text: &[u8], mut at: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(word) = text.get(at..at + 8) {
        let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
        // Each term flags its first matching byte exactly (bytes after it
        // may be flagged falsely, which the lowest set bit ignores): bytes
        // below 0x20, then bytes equal to `"` and to `\`.
        let below_space = word.wrapping_sub(ONES * 0x20) & !word;
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let flagged = (below_space
            | (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash))
            & HIGH;
        if flagged != 0 {
            return at + (flagged.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while at < text.len() && !STRING_STOPS[text[at] as usize] {
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    #[test]
    fn text_is_what_a_map_of_the_fields_serializes_to() {
        let names: Vec<String> = ["b", "a\"q", "b", "c"].map(String::from).to_vec();
        let cells = ["1", "2", "3", "4"];
        let fields = ObjectFields::new(&names);
        let mut buf = BytesMut::new();
        let text = fields
            .write::<()>(&mut buf, |i, b| {
                write_utf8_str(cells[i].as_bytes(), b);
                Ok(())
            })
            .unwrap();
        let map: Map<String, Value> = names
            .iter()
            .zip(cells)
            .map(|(n, c)| (n.clone(), json!(c)))
            .collect();
        assert_eq!(&text[..], Value::Object(map).to_string().as_bytes());
        assert_eq!(fields.column("b"), Some(2));
        assert!(!fields.is_written(0));
        // A failed cell leaves nothing behind for the next row.
        assert!(fields.write(&mut buf, |_, _| Err("bad")).is_err());
        let empty = ObjectFields::new(&[]);
        assert_eq!(
            &empty.write::<()>(&mut buf, |_, _| Ok(())).unwrap()[..],
            b"{}"
        );
    }

    #[test]
    fn strings_are_escaped_exactly_as_serde_json_escapes_them() {
        let mut every_char: String = (0u8..=0x7f).map(char::from).collect();
        every_char.push_str("é€😀 \u{2028}\u{fffd}");
        for s in [
            "",
            "plain",
            "a\"b\\c/d",
            "\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}",
            &every_char,
        ] {
            let mut buf = BytesMut::new();
            write_utf8_str(s.as_bytes(), &mut buf);
            assert_eq!(
                std::str::from_utf8(&buf).unwrap(),
                serde_json::to_string(s).unwrap(),
                "{s:?}"
            );
        }
    }
}
