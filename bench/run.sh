#!/usr/bin/env bash
# Reproducible throughput and memory benchmarks (not tests). Prints a table of
# records/s, MB/s and peak RSS with `cat` beside it as the baseline.
#
#   bench/run.sh            # 1M and 5M lines
#   LINES="1000000" bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary/target}"
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }

cargo build --release --locked -p tributary-cli >&2
BIN="$CARGO_TARGET_DIR/release/tributary"
WORK="${BENCH_DIR:-$(mktemp -d /tmp/tributary-bench.XXXXXX)}"
LINES="${LINES:-1000000 5000000}"
echo "work dir: $WORK" >&2

# measure NAME RECORDS BYTES CMD...: prints one row, timing with GNU time.
measure() {
  local name=$1 records=$2 bytes=$3; shift 3
  sync
  /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" >/dev/null 2>"$WORK/stderr.txt" || {
    cat "$WORK/stderr.txt" >&2; exit 1; }
  read -r secs rss_kib < "$WORK/time.txt"
  awk -v n="$name" -v r="$records" -v b="$bytes" -v s="$secs" -v k="$rss_kib" 'BEGIN {
    if (s < 0.001) s = 0.001;
    printf "| %-34s | %9d | %7.2f | %12.0f | %8.1f | %8.1f |\n", n, r, s, r / s, b / s / 1e6, k / 1024 }'
}

echo "| workload                           |   records |   secs |    records/s |     MB/s | peak RSS MiB |"
echo "|------------------------------------|-----------|--------|--------------|----------|--------------|"

for n in $LINES; do
  input="$WORK/in-$n/events.ndjson"
  if [ ! -f "$input" ]; then
    mkdir -p "$WORK/in-$n"
    # ~110-byte lines, like a typical event record.
    python3 - "$n" "$input" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
kinds = ["click", "view", "purchase", "signup", "logout"]
with open(path, "w") as f:
    for i in range(1, n + 1):
        f.write('{"event_id":%d,"user_id":%d,"kind":"%s","amount":%d.%02d,"at":"2026-01-01T00:%02d:%02dZ"}\n'
                % (i, i * 7 % 100003, kinds[i % 5], i % 997, i % 100, (i // 60) % 60, i % 60))
PY
  fi
  bytes=$(stat -c %s "$input")

  rm -rf "$WORK/cat-out"; mkdir -p "$WORK/cat-out"
  measure "cat file > out ($n lines)" "$n" "$bytes" sh -c "cat '$input' > '$WORK/cat-out/out' && sync '$WORK/cat-out/out'"

  rm -rf "$WORK/run-$n"; mkdir -p "$WORK/run-$n"
  cat > "$WORK/run-$n/file.toml" <<TOML
name = "bench"
[source]
type = "file"
[source.streams.events]
path = "$input"
format = "ndjson"
[sink]
type = "file"
dir = "out"
TOML
  measure "tributary ndjson file->file ($n)" "$n" "$bytes" "$BIN" run --no-progress --log-level warn "$WORK/run-$n/file.toml"
  out_lines=$(cat "$WORK/run-$n"/out/*.ndjson | wc -l)
  [ "$out_lines" -eq "$n" ] || { echo "expected $n output lines, got $out_lines" >&2; exit 1; }
done

n=1000000
rm -rf "$WORK/gen"; mkdir -p "$WORK/gen"
cat > "$WORK/gen/gen.toml" <<TOML
name = "bench"
[source]
type = "generator"
[source.streams.users]
record_type = "user"
total = $n
[sink]
type = "file"
dir = "out"
TOML
measure "tributary generator->file ($n)" "$n" 0 "$BIN" run --no-progress --log-level warn "$WORK/gen/gen.toml"
gen_bytes=$(cat "$WORK/gen"/out/*.ndjson | wc -c)
echo "(generator output: $gen_bytes bytes)" >&2
