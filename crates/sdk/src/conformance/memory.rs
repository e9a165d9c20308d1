//! The bounded-memory check: resident memory over a long read.

use super::{Kit, Violation};
use tributary_core::Poll;

/// The process's resident set in bytes (Linux: `/proc/self/statm`).
fn resident() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

impl Kit {
    /// Reads the stream (the config should make it long: a generator's
    /// `count`, a big file) until twice the [memory budget](Kit::memory_budget)
    /// of record data went by, dropping each batch as the runtime does
    /// once it is written; the process's resident memory must not grow by
    /// more than the budget, and no batch may hold a quarter of the data.
    ///
    /// Resident memory is the whole process's: run this check in a test
    /// binary of its own. Where it cannot be read (not Linux) only the
    /// batch bound is checked.
    pub async fn bounded_memory(&self) -> Result<(), Violation> {
        const C: &str = "bounded_memory";
        self.reset_upstream().await;
        let source = self.source(C).await?;
        let spec = self.spec(C, source.as_ref()).await?;
        let mut reader = self.open(C, source.as_ref(), &spec, None).await?;
        let want = self.memory_budget.saturating_mul(2);
        let mut bytes: u64 = 0;
        let mut largest: u64 = 0;
        let mut baseline: Option<u64> = None;
        let mut peak: u64 = 0;
        while bytes < want {
            let batch = match self.timed(C, "poll", reader.poll()).await? {
                Ok(Poll::Batch(b)) => b,
                Ok(_) => {
                    return Err(Violation::new(
                        C,
                        format!(
                            "the stream ended after {bytes} bytes of records; the check needs {want} (twice the budget): configure a longer stream"
                        ),
                    ))
                }
                Err(e) => return Err(Violation::new(C, format!("poll failed: {e}"))),
            };
            let size: u64 = batch.records.iter().map(|r| r.value.json_len()).sum();
            bytes += size;
            largest = largest.max(size);
            reader
                .committed(&batch.checkpoint)
                .await
                .map_err(|e| Violation::new(C, format!("committed failed: {e}")))?;
            drop(batch);
            if let Some(now) = resident() {
                // After the first batch: the reader's buffers and
                // connections are set up, the data has not piled up.
                match baseline {
                    None => baseline = Some(now),
                    Some(_) => peak = peak.max(now),
                }
            }
        }
        let _ = reader.close().await;
        if largest * 4 > bytes {
            return Err(Violation::new(
                C,
                format!("one batch held {largest} of the {bytes} bytes read: batches must stay small as the stream grows"),
            ));
        }
        if let Some(base) = baseline {
            let growth = peak.saturating_sub(base);
            if growth > self.memory_budget {
                return Err(Violation::new(
                    C,
                    format!(
                        "resident memory grew by {} MiB while reading {} MiB of records (budget {} MiB): something keeps what it read",
                        growth >> 20,
                        bytes >> 20,
                        self.memory_budget >> 20
                    ),
                ));
            }
        }
        Ok(())
    }
}
