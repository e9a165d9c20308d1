//! CSV records read with a size cap, and recovery from a stray quote.
//!
//! The `csv` crate's reader buffers a whole record, however long: one
//! 100 MB field cost 517 MiB of memory, and a quote left open took every
//! later line of the file into its field. This reader drives `csv-core`
//! over its own buffer instead, so it can (a) stop a record at
//! `max_record_bytes` and (b) tell a record whose quoting is suspect.
//!
//! **Resync rule.** A record that runs past the cap, that is still inside a
//! quoted field at the end of the input, or that spans lines and is
//! malformed (a closing quote followed by other text, or a field count
//! different from the header's) is reported as its *first line* only, and
//! reading resumes on the line after it. A stray quote therefore costs its
//! own line, never the rows after it: those are read again as rows. A field
//! that legitimately holds newlines and breaks one of the rules is read as
//! several bad lines (nothing is dropped silently either way).
//!
//! Memory per record: the raw bytes (at most the cap plus one read buffer)
//! and the unquoted fields (at most as many bytes).

use std::io::{self, Read};

const BOM: &[u8] = b"\xef\xbb\xbf";

/// The result of [`CsvRecords::next`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// A record: [`CsvRecords::fields`], [`CsvRecords::raw`], [`CsvRecords::start`].
    Record,
    /// The first line of a record that broke the resync rule (already read
    /// past).
    Bad { error: String, raw: BadRaw },
    /// Follow mode: the data ends inside a record; read it again later.
    Incomplete,
    /// No more records.
    End,
}

/// Where a record starts: byte offset and 1-based line number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Start {
    pub offset: u64,
    pub line: u64,
}

pub(crate) struct CsvRecords<R> {
    src: R,
    core: csv_core::Reader,
    core_fresh: bool,
    quote: u8,
    delimiter: u8,
    cap: usize,
    /// The read size: the buffer holds at most `cap + chunk` bytes.
    chunk: usize,
    /// At the end of the input, a record still open is [`Next::Incomplete`]
    /// (a writer is still writing it) instead of being finished.
    follow: bool,
    /// Records spanning lines with another field count are malformed.
    pub expected_fields: Option<usize>,
    buf: Vec<u8>,
    /// Unread input: `buf[lo..hi]`.
    lo: usize,
    hi: usize,
    eof: bool,
    /// Byte offset and lines (newlines) before `buf[lo]`.
    offset: u64,
    line: u64,
    /// The last record: raw bytes `buf[rec..lo]`, fields `out[..ends[i]]`.
    rec: usize,
    start: Start,
    out: Vec<u8>,
    ends: Vec<usize>,
    nfields: usize,
}

/// How a stream's CSV is read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CsvFormat {
    pub delimiter: u8,
    pub quote: u8,
    /// `max_record_bytes`.
    pub cap: usize,
    pub follow: bool,
}

impl<R: Read> CsvRecords<R> {
    /// Reads from `src`, whose first byte is at `offset`, on line `line + 1`,
    /// `buffer` bytes at a time.
    pub(crate) fn new(
        src: R,
        (offset, line): (u64, u64),
        format: CsvFormat,
        buffer: usize,
    ) -> Self {
        let CsvFormat {
            delimiter,
            quote,
            cap,
            follow,
        } = format;
        let core = csv_core::ReaderBuilder::new()
            .delimiter(delimiter)
            .quote(quote)
            .terminator(csv_core::Terminator::Any(b'\n'))
            .build();
        CsvRecords {
            src,
            core,
            core_fresh: true,
            quote,
            delimiter,
            cap: cap.max(1),
            chunk: buffer.max(64),
            follow,
            expected_fields: None,
            buf: vec![0; buffer.max(64)],
            lo: 0,
            hi: 0,
            eof: false,
            offset,
            line,
            rec: 0,
            start: Start::default(),
            out: vec![0; 1024],
            ends: vec![0; 64],
            nfields: 0,
        }
    }

    pub(crate) fn get_mut(&mut self) -> &mut R {
        &mut self.src
    }

    /// The position after the last record (or bad line) returned.
    pub(crate) fn position(&self) -> (u64, u64) {
        (self.offset, self.line)
    }

    pub(crate) fn start(&self) -> Start {
        self.start
    }

    /// The raw bytes of the last record, terminator included.
    pub(crate) fn raw(&self) -> &[u8] {
        &self.buf[self.rec..self.lo]
    }

    pub(crate) fn len(&self) -> usize {
        self.nfields
    }

    pub(crate) fn field(&self, i: usize) -> &[u8] {
        let from = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.out[from..self.ends[i]]
    }

    /// Reads more input after `buf[keep..hi]`, moving that to the front
    /// first; `false` at the end of the input.
    /// Positions into the buffer move down by `keep` whatever the result.
    fn fill(&mut self, keep: usize) -> io::Result<bool> {
        if keep > 0 {
            self.buf.copy_within(keep..self.hi, 0);
            self.hi -= keep;
            self.lo -= keep.min(self.lo);
            self.rec -= keep.min(self.rec);
        }
        if self.eof {
            return Ok(false);
        }
        if self.hi == self.buf.len() {
            let grown = (self.buf.len() * 2).min(self.cap.saturating_add(self.chunk));
            self.buf.resize(grown.max(self.hi + 64), 0);
        }
        loop {
            match self.src.read(&mut self.buf[self.hi..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.hi += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// `csv-core` strips a BOM at the start of whatever it reads first; the
    /// file's own BOM is handled by the caller, so a record that merely
    /// starts with U+FEFF elsewhere is fed one byte first to keep it.
    fn core_read(
        &mut self,
        from: usize,
        nout: usize,
        nend: usize,
    ) -> (csv_core::ReadRecordResult, usize, usize, usize) {
        let mut input = &self.buf[from..self.hi];
        if self.core_fresh && input.starts_with(BOM) {
            input = &input[..1];
        }
        if !input.is_empty() {
            self.core_fresh = false;
        }
        self.core
            .read_record(input, &mut self.out[nout..], &mut self.ends[nend..])
    }

    /// Skips a UTF-8 byte-order mark at the current position (call at file
    /// offset 0 only).
    pub(crate) fn skip_bom(&mut self) -> io::Result<()> {
        while self.hi - self.lo < BOM.len() && self.fill(self.lo)? {}
        if self.buf[self.lo..self.hi].starts_with(BOM) {
            self.lo += BOM.len();
            self.offset += BOM.len() as u64;
        }
        Ok(())
    }

    pub(crate) fn next(&mut self) -> io::Result<Next> {
        // Blank lines: csv-core skips them silently, which would make the
        // record's start (and its line number) wrong.
        loop {
            if self.lo == self.hi && !self.fill(self.lo)? {
                self.rec = self.lo;
                return Ok(Next::End);
            }
            if self.buf[self.lo] != b'\n' {
                break;
            }
            self.lo += 1;
            self.offset += 1;
            self.line += 1;
        }
        self.rec = self.lo;
        self.start = Start {
            offset: self.offset,
            line: self.line + 1,
        };
        let (mut cur, mut nout, mut nend) = (self.lo, 0usize, 0usize);
        let mut at_end = false;
        loop {
            let (res, nin, o, e) = self.core_read(cur, nout, nend);
            cur += nin;
            nout += o;
            nend += e;
            match res {
                csv_core::ReadRecordResult::InputEmpty => {
                    if cur < self.hi {
                        continue; // fed short (see core_read)
                    }
                    if cur - self.rec > self.cap {
                        return self.give_up(self.over_cap());
                    }
                    let rec = self.rec;
                    let more = self.fill(rec)?;
                    cur -= rec;
                    if more {
                        continue;
                    }
                    if self.follow {
                        self.core.reset();
                        self.core_fresh = true;
                        self.lo = self.rec;
                        return Ok(Next::Incomplete);
                    }
                    // The end of the file: finish the record.
                    loop {
                        let (res, _, _, e) = self.core.read_record(
                            &[],
                            &mut self.out[nout..],
                            &mut self.ends[nend..],
                        );
                        nend += e;
                        match res {
                            csv_core::ReadRecordResult::OutputEndsFull => {
                                let n = self.ends.len() * 2;
                                self.ends.resize(n, 0);
                            }
                            csv_core::ReadRecordResult::Record => {
                                at_end = true;
                                break;
                            }
                            _ => {
                                self.lo = self.hi;
                                return Ok(Next::End);
                            }
                        }
                    }
                    break;
                }
                csv_core::ReadRecordResult::OutputFull => {
                    let n = self.out.len() * 2;
                    self.out.resize(n, 0);
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0);
                }
                csv_core::ReadRecordResult::Record => break,
                csv_core::ReadRecordResult::End => {
                    self.lo = cur;
                    return Ok(Next::End);
                }
            }
        }
        self.nfields = nend;
        if cur - self.rec > self.cap {
            // Completed by the read that took it past the cap.
            return self.give_up(self.over_cap());
        }
        let raw = &self.buf[self.rec..cur];
        let body = raw.strip_suffix(b"\n").unwrap_or(raw);
        let spans_lines = memchr::memchr(b'\n', body).is_some();
        if spans_lines || at_end {
            let problem = match quoting(body, self.delimiter, self.quote) {
                Quoting::Open => Some(
                    "unterminated quoted field: no closing quote before the end of the file; \
                     the lines after this one are read as rows"
                        .to_string(),
                ),
                Quoting::TextAfterClose => Some(malformed()),
                Quoting::Fine => match self.expected_fields {
                    Some(n) if spans_lines && n != nend => Some(format!(
                        "expected {n} fields (as in the header), found {nend} in a record \
                         spanning lines; the lines after this one are read as rows"
                    )),
                    _ => None,
                },
            };
            if let Some(error) = problem {
                return self.give_up(error);
            }
        }
        let newlines = memchr::memchr_iter(b'\n', raw).count() as u64;
        self.offset += raw.len() as u64;
        self.line += newlines;
        self.lo = cur;
        Ok(Next::Record)
    }

    /// Why the record at `rec` is bad once longer than the cap; worded from
    /// its first `cap` bytes only, so the same input always reads the same.
    fn over_cap(&self) -> String {
        let head = &self.buf[self.rec..(self.rec + self.cap).min(self.hi)];
        let mut error = format!("record longer than max_record_bytes ({} bytes)", self.cap);
        match quoting(head, self.delimiter, self.quote) {
            Quoting::Open => error.push_str(
                "; a quoted field is still open there, so the lines after its first are read as rows",
            ),
            Quoting::TextAfterClose => error.push_str(
                "; a quoted field in it has text after its closing quote (a stray quote?), so the \
                 lines after its first are read as rows",
            ),
            Quoting::Fine => {}
        }
        error
    }

    /// Reports the record's first line as bad and resumes after it. The
    /// line is held when it fits in the cap, and otherwise skipped without
    /// holding it and reported by where it lies, for the caller to copy.
    fn give_up(&mut self, error: String) -> io::Result<Next> {
        self.core.reset();
        self.core_fresh = true;
        let from = self.rec;
        let offset = self.offset;
        let mut held: Vec<u8>;
        let mut consumed: u64;
        let mut ended = true;
        // The line's last byte before its newline (a `\r` is no content).
        let last_byte: Option<u8>;
        match memchr::memchr(b'\n', &self.buf[from..self.hi]) {
            Some(i) => {
                held = self.buf[from..from + i.min(self.cap + 1)].to_vec();
                last_byte = i.checked_sub(1).map(|j| self.buf[from + j]);
                consumed = i as u64 + 1;
                self.lo = from + i + 1;
            }
            None => {
                // One line longer than the buffer: hold its first `cap`
                // bytes at most, skip to its end.
                held = self.buf[from..self.hi.min(from + self.cap + 1)].to_vec();
                let mut last = self.buf[from..self.hi].last().copied();
                consumed = (self.hi - from) as u64;
                self.lo = self.hi;
                loop {
                    if !self.fill(self.lo)? {
                        ended = false;
                        break;
                    }
                    let chunk = &self.buf[self.lo..self.hi];
                    let (take, done) = match memchr::memchr(b'\n', chunk) {
                        Some(i) => (i, true),
                        None => (chunk.len(), false),
                    };
                    let room = (self.cap + 1).saturating_sub(held.len()).min(take);
                    held.extend_from_slice(&chunk[..room]);
                    if take > 0 {
                        last = Some(chunk[take - 1]);
                    }
                    consumed += take as u64 + u64::from(done);
                    self.lo += take + usize::from(done);
                    if done {
                        break;
                    }
                }
                last_byte = last;
            }
        }
        let mut line_len = consumed - u64::from(ended);
        if last_byte == Some(b'\r') {
            line_len -= 1;
        }
        self.offset += consumed;
        self.line += u64::from(ended);
        self.rec = self.lo;
        self.nfields = 0;
        let raw = if line_len <= self.cap as u64 {
            held.truncate(line_len as usize);
            BadRaw::Held(held)
        } else {
            BadRaw::Span {
                offset,
                len: line_len,
            }
        };
        Ok(Next::Bad { error, raw })
    }
}

/// The first line of a bad record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BadRaw {
    /// The line, without its terminator: it fits in the cap.
    Held(Vec<u8>),
    /// A line longer than the cap, not held: `len` bytes (terminator left
    /// out) at byte `offset` of the input.
    Span { offset: u64, len: u64 },
}

fn malformed() -> String {
    "malformed quoted field: text after its closing quote, so a quote probably opened a field \
     that swallowed the following lines; they are read as rows"
        .to_string()
}

#[derive(Debug, PartialEq, Eq)]
enum Quoting {
    Fine,
    /// Still inside a quoted field at the end.
    Open,
    /// A quoted field closed and followed by other text: the sign of a
    /// stray quote pairing with a later field's opening quote.
    TextAfterClose,
}

/// Whether a record's quoting can be trusted (RFC 4180's rule for quoted
/// fields; a quote inside an unquoted field stays literal, as `csv-core`
/// reads it).
fn quoting(body: &[u8], delimiter: u8, quote: u8) -> Quoting {
    #[derive(PartialEq)]
    enum S {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut s = S::FieldStart;
    for &b in body {
        s = match s {
            S::FieldStart if b == quote => S::Quoted,
            S::FieldStart | S::Unquoted if b == delimiter => S::FieldStart,
            S::FieldStart | S::Unquoted => S::Unquoted,
            S::Quoted if b == quote => S::QuoteInQuoted,
            S::Quoted => S::Quoted,
            S::QuoteInQuoted if b == quote => S::Quoted,
            S::QuoteInQuoted if b == delimiter => S::FieldStart,
            S::QuoteInQuoted if b == b'\r' || b == b'\n' => S::Unquoted,
            S::QuoteInQuoted => return Quoting::TextAfterClose,
        };
    }
    if s == S::Quoted {
        Quoting::Open
    } else {
        Quoting::Fine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(cap: usize, follow: bool) -> CsvFormat {
        CsvFormat {
            delimiter: b',',
            quote: b'"',
            cap,
            follow,
        }
    }

    fn all(data: &[u8], cap: usize, buffer: usize) -> Vec<Result<Vec<String>, (u64, String)>> {
        let mut r = CsvRecords::new(data, (0, 0), fmt(cap, false), buffer);
        r.expected_fields = Some(2);
        let mut v = Vec::new();
        loop {
            match r.next().unwrap() {
                Next::Record => v.push(Ok((0..r.len())
                    .map(|i| String::from_utf8_lossy(r.field(i)).into_owned())
                    .collect())),
                Next::Bad { raw, .. } => {
                    let raw = match raw {
                        BadRaw::Held(raw) => raw,
                        BadRaw::Span { offset, len } => {
                            assert!(len > cap as u64, "a line within the cap is held");
                            data[offset as usize..(offset + len) as usize].to_vec()
                        }
                    };
                    v.push(Err((r.line, String::from_utf8_lossy(&raw).into_owned())))
                }
                Next::End => return v,
                Next::Incomplete => unreachable!(),
            }
        }
    }

    fn ok(f: &[&str]) -> Result<Vec<String>, (u64, String)> {
        Ok(f.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn a_stray_quote_costs_its_own_line() {
        for buffer in [64, 4096] {
            let got = all(b"id,v\nA,1\nC,\"abc\nB,2\nD,4\n", 1 << 20, buffer);
            assert_eq!(
                got,
                vec![
                    ok(&["id", "v"]),
                    ok(&["A", "1"]),
                    Err((3, "C,\"abc".into())),
                    ok(&["B", "2"]),
                    ok(&["D", "4"]),
                ]
            );
            // The open quote runs to the end, a newline inside it.
            let got = all(b"A,1\nC,\"abc\n", 1 << 20, buffer);
            assert_eq!(got, vec![ok(&["A", "1"]), Err((2, "C,\"abc".into()))]);
            // Paired with a later field's opening quote.
            let got = all(b"C,\"abc\nB,2\nE,\"x y\"\n", 1 << 20, buffer);
            assert_eq!(
                got,
                vec![
                    Err((1, "C,\"abc".into())),
                    ok(&["B", "2"]),
                    ok(&["E", "x y"])
                ]
            );
        }
    }

    #[test]
    fn quoted_newlines_and_blank_lines_still_work() {
        let got = all(b"\n\nA,\"x\ny\"\r\n\nB,\"q\"\"\"\n", 1 << 20, 64);
        assert_eq!(got, vec![ok(&["A", "x\ny\r"]), ok(&["B", "q\""])]);
    }

    #[test]
    fn records_over_the_cap_are_their_first_line_and_bounded() {
        let mut data = b"A,1\nB,".to_vec();
        data.extend(std::iter::repeat_n(b'x', 10_000));
        data.extend(b"\nC,3\nD,\"");
        data.extend(std::iter::repeat_n(b'y', 300));
        data.extend(b"\nE,5\n");
        let got = all(&data, 100, 64);
        assert_eq!(got.len(), 5);
        assert_eq!(got[0], ok(&["A", "1"]));
        // Whole, however long: the reader only says where they lie.
        let Err((2, raw)) = &got[1] else {
            panic!("{:?}", got[1])
        };
        assert_eq!(raw.len(), 10_002);
        assert!(raw.starts_with("B,xxx"));
        assert_eq!(got[2], ok(&["C", "3"]));
        assert!(matches!(&got[3], Err((4, r)) if r.len() == 303 && r.starts_with("D,\"yyy")));
        assert_eq!(got[4], ok(&["E", "5"]));
        // A line of exactly the cap is held; `\r\n` is no content.
        let mut data = b"A,\"".to_vec();
        data.resize(100, b'x');
        data.extend(b"\r\nB,2\n");
        let mut r = CsvRecords::new(&data[..], (0, 0), fmt(100, false), 64);
        let Next::Bad { raw, .. } = r.next().unwrap() else {
            panic!("a quote left open")
        };
        assert_eq!(raw, BadRaw::Held(data[..100].to_vec()));
        assert_eq!(r.next().unwrap(), Next::Record);
        assert_eq!(r.field(1), b"2");
    }

    #[test]
    fn a_record_completed_past_the_cap_is_still_over_it() {
        let mut data = b"1,".to_vec();
        data.resize(1_500_000, b'x');
        data.extend(b"\n2,y\n");
        let mut r = CsvRecords::new(&data[..], (0, 0), fmt(1 << 20, false), 256 * 1024);
        let Next::Bad { raw, error } = r.next().unwrap() else {
            panic!("a record of 1.5 MB")
        };
        assert_eq!(
            raw,
            BadRaw::Span {
                offset: 0,
                len: 1_500_000
            }
        );
        assert!(
            error.starts_with("record longer than max_record_bytes (1048576 bytes)"),
            "{error}"
        );
        assert!(
            r.buf.len() <= (1 << 20) + 256 * 1024 + 64,
            "{}",
            r.buf.len()
        );
        assert_eq!(r.next().unwrap(), Next::Record);
        assert_eq!(r.field(1), b"y");
    }

    #[test]
    fn follow_mode_waits_for_an_open_record() {
        let mut r = CsvRecords::new(&b"A,1\nB,\"x\n"[..], (0, 0), fmt(1000, true), 64);
        assert_eq!(r.next().unwrap(), Next::Record);
        assert_eq!(r.next().unwrap(), Next::Incomplete);
        assert_eq!(r.position(), (4, 1));
    }
}
