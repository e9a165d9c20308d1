#!/usr/bin/env bash
# Kafka sink benchmark against Apache Kafka (scripts/kafka: one KRaft node on
# 127.0.0.1, its data in the work dir): the same file of NDJSON lines
# (~200 bytes) produced by each of these, in alternating rounds, each run
# into a fresh topic of one partition:
#
# - `ProducerPerformance` (Kafka's own tool, JVM; its start and its load of
#   the payload file count, so it is slower than the plain producer), payloads
#   from the file, acks=all, idempotent;
# - `kafka_produce`, a plain rdkafka producer with the sink's settings, no
#   parsing, no checkpoints: once with the bare lines, once with a key and
#   the four `tributary.*` headers on each line (the message shape
#   tributary's sink sends);
# - Kafka Connect standalone with FileStreamSourceConnector (the tool our
#   users run today), StringConverter values, timed until the topic holds
#   every line (Connect never exits on its own), JVM start included;
# - `tributary run --once` (file source -> kafka sink, checkpoints on) with
#   `[metadata] enabled = false` (values = the lines, plus key and
#   headers), and with its defaults (three metadata fields spliced into
#   every value);
# - the same defaults with the checkpoints in a Kafka state topic, once
#   at-least-once and once with `exactly_once = true` (one Kafka
#   transaction per flush holding the records and the checkpoints), at the
#   default flush interval and flush_records: what exactly-once costs.
#
# Every time includes the process's start (a JVM's too); peak RSS is the
# process's (the JVM's for the Java tools). At the end: medians and the
# medians of per-round ratios.
#
# `ROWS=eos` runs only the two state-in-Kafka rows (what exactly-once
# costs), their order swapped every round so that load from elsewhere on
# the machine hits both alike; `ROWS=connect` runs only Kafka Connect and
# tributary's defaults, in alternating order (bench/peers.sh uses it); `BEFORE=path/to/tributary` adds the
# exactly-once row run by another build (before/after a change).
#
#   bench/kafka.sh                  # 1M lines, 3 rounds, compression none
#   LINES=200000 RUNS=5 bench/kafka.sh
#   ROWS=eos RUNS=5 BEFORE=/tmp/tributary-old bench/kafka.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary/target}"
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
scripts/kafka install >/dev/null

cargo build --release --locked -p tributary-cli -p tributary-testkit --bins >&2
REL="$CARGO_TARGET_DIR/release"
LINES="${LINES:-1000000}"
COMPRESSION="${COMPRESSION:-none}"
RUNS="${RUNS:-3}"
ROWS="${ROWS:-all}"
BEFORE="${BEFORE:-}"
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

. bench/own_broker.sh
echo "Apache Kafka at $BROKER" >&2

results="$WORK/results.tsv"
: >"$results"
# A fresh topic for every run: the counter lives in a file, since
# `$(next_topic)` runs in a subshell whose variables do not come back.
echo 0 >"$WORK/topic_n"
next_topic() {
  local n=$(($(cat "$WORK/topic_n") + 1))
  echo "$n" >"$WORK/topic_n"
  echo "bench-$$-$n"
}

# record NAME ROUND SECS RSS_KIB
record() {
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$results"
  awk -v n="$1" -v r="$LINES" -v b="$bytes" -v s="$3" -v k="$4" 'BEGIN {
    if (s < 0.001) s = 0.001;
    printf "| %-46s | %9d | %7.2f | %12.0f | %8.1f | %12.1f |\n", n, r, s, r / s, b / s / 1e6, k / 1024 }'
}

# measure NAME ROUND COMMAND...: a command that exits when it is done.
measure() {
  local name=$1 round=$2; shift 2
  /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" >"$WORK/stdout.txt" 2>"$WORK/stderr.txt" || {
    cat "$WORK/stderr.txt" >&2; exit 1; }
  local secs rss
  read -r secs rss < <(tail -n 1 "$WORK/time.txt")
  record "$name" "$round" "$secs" "$rss"
}

connect_standalone() {
  local round=$1 topic
  topic=$(next_topic)
  cat >"$WORK/worker.properties" <<EOF
bootstrap.servers=$BROKER
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.storage.StringConverter
offset.storage.file.filename=$WORK/connect-$topic.offsets
listeners=http://127.0.0.1:$(free_port)
producer.compression.type=$COMPRESSION
EOF
  cat >"$WORK/file-source.properties" <<EOF
name=file-source-$topic
connector.class=org.apache.kafka.connect.file.FileStreamSourceConnector
tasks.max=1
file=$input
topic=$topic
EOF
  /usr/bin/time -f "%e %M" -o "$WORK/time.txt" \
    scripts/kafka java org.apache.kafka.connect.cli.ConnectStandalone \
    "$WORK/worker.properties" "$WORK/file-source.properties" >"$WORK/connect.log" 2>&1 &
  local time_pid=$!
  local secs
  secs=$("$REL/kafka_wait" "$BROKER" "$topic" "$LINES" 600) || {
    tail -20 "$WORK/connect.log" >&2; exit 1; }
  pkill -TERM -P "$time_pid" 2>/dev/null || true
  wait "$time_pid" 2>/dev/null || true
  local rss
  # The last line: GNU time first says how a killed command ended.
  rss=$(tail -n 1 "$WORK/time.txt" | awk '{print $2}')
  record "Kafka Connect standalone, FileStreamSource" "$round" "$secs" "$rss"
}

# write_config NAME PRELUDE [SINK_EXTRA]
write_config() {
  cat >"$WORK/$1.toml" <<TOML
name = "bench-$1"
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
${3:-}
TOML
}

run_tributary() {
  local name=$1 round=$2 config=$3 bin=${4:-$REL/tributary}
  local topic
  topic=$(next_topic)
  local prelude="[streams.events]
target = \"$topic\"
$( [ "$config" = lines ] && printf '[metadata]\nenabled = false' )"
  local sink_extra=""
  case "$config" in
    alo|eos) prelude="$prelude
[state]
url = \"kafka://$BROKER/state-$topic\"" ;;
  esac
  [ "$config" = eos ] && sink_extra="exactly_once = true"
  write_config "$config" "$prelude" "$sink_extra"
  rm -rf "$WORK/.tributary"
  measure "$name" "$round" "$bin" run --once --no-progress --log-level warn "$WORK/$config.toml"
  # A run that delivered too few records must not count as a result.
  "$REL/kafka_wait" "$BROKER" "$topic" "$LINES" 30 >/dev/null || {
    echo "$name: the topic $topic does not hold $LINES records" >&2; exit 1; }
}

echo "| workload                                       |   records |   secs |    records/s |     MB/s | peak RSS MiB |"
echo "|------------------------------------------------|-----------|--------|--------------|----------|--------------|"
eos_rows() {
  local round=$1
  if [ $((round % 2)) = 1 ]; then
    run_tributary "tributary, defaults, state in Kafka" "$round" alo
    run_tributary "tributary, defaults, exactly_once" "$round" eos
  else
    run_tributary "tributary, defaults, exactly_once" "$round" eos
    run_tributary "tributary, defaults, state in Kafka" "$round" alo
  fi
  if [ -n "$BEFORE" ]; then
    run_tributary "tributary, defaults, exactly_once, before" "$round" eos "$BEFORE"
  fi
}

for round in $(seq 1 "$RUNS"); do
  if [ "$ROWS" = eos ]; then
    eos_rows "$round"
    continue
  fi
  if [ "$ROWS" = connect ]; then
    if [ $((round % 2)) = 1 ]; then
      connect_standalone "$round"
      run_tributary "tributary, defaults (+ metadata fields)" "$round" defaults
    else
      run_tributary "tributary, defaults (+ metadata fields)" "$round" defaults
      connect_standalone "$round"
    fi
    continue
  fi
  measure "ProducerPerformance (Kafka's tool, JVM)" "$round" \
    env KAFKA_HEAP="-Xmx1g -Xms256m" scripts/kafka java org.apache.kafka.tools.ProducerPerformance \
    --topic "$(next_topic)" --num-records "$LINES" --payload-file "$input" --throughput -1 \
    --producer-props "bootstrap.servers=$BROKER" acks=all enable.idempotence=true "compression.type=$COMPRESSION"
  measure "plain rdkafka producer, bare lines" "$round" "$REL/kafka_produce" "$BROKER" "$(next_topic)" "$input" "$COMPRESSION"
  measure "plain rdkafka producer, lines + key + headers" "$round" "$REL/kafka_produce" "$BROKER" "$(next_topic)" "$input" "$COMPRESSION" --key-and-headers
  connect_standalone "$round"
  run_tributary "tributary, values = lines (+ key + headers)" "$round" lines
  run_tributary "tributary, defaults (+ metadata fields)" "$round" defaults
  # Alternating, one after the other, on the same broker.
  eos_rows "$round"
done

echo
python3 - "$results" "$LINES" <<'PY'
import statistics, sys, collections
rows = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    name, rnd, secs, rss = line.rstrip("\n").split("\t")
    rows[name][rnd] = (float(secs), int(rss))
n = int(sys.argv[2])
print("| workload (median of rounds)                    |  records/s | peak RSS MiB |")
print("|------------------------------------------------|------------|--------------|")
for name, by_round in rows.items():
    secs = statistics.median(s for s, _ in by_round.values())
    rss = statistics.median(r for _, r in by_round.values())
    print(f"| {name:<46} | {n / secs:>10,.0f} | {rss / 1024:>12.1f} |")
def ratio(a, b):
    rs = [rows[b][r][0] / rows[a][r][0] for r in rows[a] if r in rows[b]]
    return statistics.median(rs), min(rs), max(rs)
tl = "tributary, values = lines (+ key + headers)"
td = "tributary, defaults (+ metadata fields)"
kc = "Kafka Connect standalone, FileStreamSource"
pk = "plain rdkafka producer, lines + key + headers"
pp = "ProducerPerformance (Kafka's tool, JVM)"
ta = "tributary, defaults, state in Kafka"
te = "tributary, defaults, exactly_once"
tb = "tributary, defaults, exactly_once, before"
print()
print("per-round ratios of records/s (median, min, max):")
for a, b in [(tl, kc), (td, kc), (tl, pk), (td, pk), (tl, pp), (te, ta), (te, td), (tb, ta)]:
    if a not in rows or b not in rows:
        continue
    m, lo, hi = ratio(a, b)
    print(f"  {a} / {b}: {m:.2f} ({lo:.2f} - {hi:.2f})")
PY
