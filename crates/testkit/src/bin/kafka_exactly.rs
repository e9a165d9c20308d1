//! Benchmark helper: checks that a topic holds the keys `1..=N` exactly
//! once for a `read_committed` consumer, and counts what only
//! `read_uncommitted` sees (records of aborted transactions).
//! bench/kafka_eos_kills.sh runs it after its kill -9 loop.
//!
//! ```text
//! kafka_exactly BROKERS TOPIC N
//! ```
//!
//! Prints `lost=L duplicated=D aborted=A` and exits 1 unless L = D = 0.

use tributary_testkit::kafka::{key_counts, Isolation, Kafka};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: kafka_exactly BROKERS TOPIC N");
        std::process::exit(2);
    }
    let n: i64 = args[3].parse().unwrap_or_else(|e| panic!("N: {e}"));
    std::env::set_var("TRIBUTARY_KAFKA_BOOTSTRAP", &args[1]);
    let broker = Kafka::shared();
    let committed = key_counts(&broker.read_all_as(&args[2], Isolation::ReadCommitted));
    let everything = key_counts(&broker.read_all_as(&args[2], Isolation::ReadUncommitted));
    let lost = (1..=n).filter(|i| !committed.contains_key(i)).count();
    let outside: usize = committed
        .iter()
        .filter(|(k, _)| **k < 1 || **k > n)
        .map(|(_, c)| c)
        .sum();
    let duplicated: usize = committed.values().map(|c| c - 1).sum::<usize>() + outside;
    let aborted: usize = everything.values().sum::<usize>() - committed.values().sum::<usize>();
    println!("lost={lost} duplicated={duplicated} aborted={aborted}");
    if lost != 0 || duplicated != 0 {
        std::process::exit(1);
    }
}
