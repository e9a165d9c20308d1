#!/usr/bin/env bash
# Kafka sink benchmark: 1M NDJSON lines (~200 bytes) produced to a tansu
# broker (memory engine), side by side, release build, a fresh broker for
# each measurement:
#
# - `kafka_produce`, a plain rdkafka producer with the sink's settings
#   (acks=all, idempotent, same compression), no parsing, no checkpoints:
#   once with the bare lines, once with a key and the four `tributary.*`
#   headers on each line (as rdkafka's own example producer sends a key and
#   a header): the same bytes tributary's sink sends;
# - `tributary run --once` (file source -> kafka sink, checkpoints on) with
#   `[metadata] enabled = false`, so each value is the line itself, with
#   the key and the four headers;
# - tributary with its defaults, which also splices three metadata fields
#   into every value.
#
#   bench/kafka.sh                  # 1M lines, compression none
#   LINES=200000 bench/kafka.sh
#   COMPRESSION=lz4 RUNS=3 bench/kafka.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary/target}"
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
TANSU=$(scripts/kafka)

cargo build --release --locked -p tributary-cli -p tributary-testkit --bins >&2
REL="$CARGO_TARGET_DIR/release"
LINES="${LINES:-1000000}"
COMPRESSION="${COMPRESSION:-none}"
RUNS="${RUNS:-2}"
WORK="${BENCH_DIR:-$(mktemp -d /tmp/tributary-kafka-bench.XXXXXX)}"
mkdir -p "$WORK"
echo "work dir: $WORK" >&2

input="$WORK/events-$LINES.ndjson"
if [ ! -f "$input" ]; then
  python3 - "$LINES" "$input" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
kinds = ["click", "view", "purchase", "signup", "logout"]
with open(path, "w") as f:
    for i in range(1, n + 1):
        f.write('{"event_id":%d,"user_id":%d,"kind":"%s","amount":%d.%02d,"at":"2026-01-01T00:%02d:%02dZ",'
                '"page":"/products/%d/details","agent":"Mozilla/5.0 (X11; Linux x86_64)","session":"s-%08x"}\n'
                % (i, i * 7 % 100003, kinds[i % 5], i % 997, i % 100, (i // 60) % 60, i % 60, i % 5000, i * 2654435761 % 2**32))
PY
fi
bytes=$(stat -c %s "$input")
echo "input: $LINES lines, $((bytes / LINES)) bytes per line" >&2

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BROKER="127.0.0.1:$PORT"
broker_pid=""
start_broker() {
  stop_broker
  "$TANSU" broker --listener-url "tcp://$BROKER" --advertised-listener-url "tcp://$BROKER" \
    --storage-engine memory://tansu/ >"$WORK/tansu.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "tansu did not start; log:" >&2; cat "$WORK/tansu.log" >&2; exit 1
}
stop_broker() {
  if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
  broker_pid=""
}
trap stop_broker EXIT

measure() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" >/dev/null 2>"$WORK/stderr.txt" || {
    cat "$WORK/stderr.txt" >&2; exit 1; }
  read -r secs rss_kib < "$WORK/time.txt"
  awk -v n="$name" -v r="$LINES" -v b="$bytes" -v s="$secs" -v k="$rss_kib" 'BEGIN {
    if (s < 0.001) s = 0.001;
    printf "| %-44s | %9d | %7.2f | %12.0f | %8.1f | %12.1f |\n", n, r, s, r / s, b / s / 1e6, k / 1024 }'
}

write_config() {
  cat > "$WORK/$1.toml" <<TOML
name = "bench"
$2
[source]
type = "file"
[source.streams.events]
path = "$input"
format = "ndjson"
primary_key = ["event_id"]
[sink]
type = "kafka"
brokers = "$BROKER"
compression = "$COMPRESSION"
TOML
}
write_config lines $'[metadata]\nenabled = false'
write_config defaults ""

run_tributary() {
  start_broker
  rm -rf "$WORK/.tributary"
  measure "$1" "$REL/tributary" run --once --no-progress --log-level warn "$WORK/$2.toml"
}

echo "| workload                                     |   records |   secs |    records/s |     MB/s | peak RSS MiB |"
echo "|----------------------------------------------|-----------|--------|--------------|----------|--------------|"
for _ in $(seq 1 "$RUNS"); do
  start_broker
  measure "plain producer, bare lines" "$REL/kafka_produce" "$BROKER" bench.events "$input" "$COMPRESSION"
  start_broker
  measure "plain producer, lines + key + headers" "$REL/kafka_produce" "$BROKER" bench.events "$input" "$COMPRESSION" --key-and-headers
  run_tributary "tributary, values = lines (+ key + headers)" lines
  run_tributary "tributary, defaults (+ metadata fields)" defaults
done
