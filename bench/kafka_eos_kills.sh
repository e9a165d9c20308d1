#!/usr/bin/env bash
# Exactly-once into Kafka under kill -9, on demand: a generator connector
# (`[sink] exactly_once = true`, state in a Kafka topic) writing TOTAL
# records into Apache Kafka (scripts/kafka, a broker of its own) is killed
# with SIGKILL KILLS times at random moments, then run to completion. The
# topic is read back with read_committed: every key of 1..TOTAL exactly
# once, or the script fails; read_uncommitted shows how many records of
# aborted transactions the kills left in the log.
#
#   bench/kafka_eos_kills.sh                 # 50 kills, 100k records
#   KILLS=200 TOTAL=400000 bench/kafka_eos_kills.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary/target}"
scripts/kafka install >/dev/null
cargo build --release --locked -p tributary-cli -p tributary-testkit --bins >&2
REL="$CARGO_TARGET_DIR/release"
KILLS="${KILLS:-50}"
TOTAL="${TOTAL:-100000}"
RATE="${RATE:-20000}"
WORK="${BENCH_DIR:-$(mktemp -d /tmp/tributary-eos-kills.XXXXXX)}"
mkdir -p "$WORK"
echo "work dir: $WORK" >&2

. bench/own_broker.sh

name="eos-kills-$$"
cat >"$WORK/gen.toml" <<TOML
name = "$name"
[source]
type = "generator"
seed = 11
[source.streams.users]
record_type = "user"
rate = $RATE
total = $TOTAL
[runtime]
flush_records = 5000
flush_interval = "500ms"
max_retries = 30
backoff_max = "1s"
[state]
url = "kafka://$BROKER/$name-state"
[sink]
type = "kafka"
brokers = "$BROKER"
exactly_once = true
partitions = 3
TOML

RANDOM=$$
for i in $(seq 1 "$KILLS"); do
  "$REL/tributary" run --no-progress --log-level warn "$WORK/gen.toml" >>"$WORK/runs.log" 2>&1 &
  pid=$!
  # 0.2 - 3.0 s: before, during and after start-up, mid-transaction, mid-commit.
  sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.3f", 0.2 + (r % 2800) / 1000 }')"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  printf '.' >&2
done
echo >&2
"$REL/tributary" run --no-progress --log-level warn "$WORK/gen.toml" >>"$WORK/runs.log" 2>&1
result=$("$REL/kafka_exactly" "$BROKER" "$name.users" "$TOTAL") || { echo "kills=$KILLS $result"; exit 1; }
echo "kills=$KILLS records=$TOTAL $result"
