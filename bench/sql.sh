#!/usr/bin/env bash
# SQL source benchmark: a 1M-row PostgreSQL table (bigint id, timestamptz,
# numeric, text, boolean) read by `tributary run --once` (sql source, keyset
# pages of fetch_size rows → file sink, checkpoint per batch), beside psql
# exporting the same rows as JSON (`row_to_json`, computed by the server).
#
#   bench/sql.sh               # 1M rows
#   ROWS=200000 bench/sql.sh
#   REBUILD=1 bench/sql.sh     # recreate the table even if it has ROWS rows
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary/target}"
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
scripts/services

cargo build --release --locked -p tributary-cli --bins >&2
REL="$CARGO_TARGET_DIR/release"
ROWS="${ROWS:-1000000}"
TABLE=bench_sql
PSQL=(psql -h 127.0.0.1 -U postgres -X -q -v ON_ERROR_STOP=1 test)
WORK="${BENCH_DIR:-$(mktemp -d /tmp/tributary-sql-bench.XXXXXX)}"
echo "work dir: $WORK" >&2

. bench/sql_table.sh
ensure_bench_sql_table "$TABLE" "$ROWS"

measure() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" >/dev/null 2>"$WORK/stderr.txt" || {
    cat "$WORK/stderr.txt" >&2; exit 1; }
  read -r secs rss_kib < "$WORK/time.txt"
  NAME="$name" awk -v r="$ROWS" -v s="$secs" -v k="$rss_kib" 'BEGIN {
    n = ENVIRON["NAME"]; if (s < 0.001) s = 0.001;
    printf "| %-46s | %9d | %7.2f | %12.0f | %12.1f |\n", n, r, s, r / s, k / 1024 }'
}

echo "| workload                                       |      rows |   secs |       rows/s | peak RSS MiB |"
echo "|------------------------------------------------|-----------|--------|--------------|--------------|"

# Warm the table into shared buffers / the page cache for both readers.
"${PSQL[@]}" -c "\\copy (select row_to_json(t) from $TABLE t) to stdout" >/dev/null
measure "psql \\copy row_to_json (baseline)" \
  "${PSQL[@]}" -c "\\copy (select row_to_json(t) from $TABLE t) to stdout"

run_tributary() {
  local name=$1 stream=$2
  rm -rf "$WORK/run"; mkdir -p "$WORK/run"
  cat > "$WORK/run/sql.toml" <<TOML
name = "bench"
[source]
type = "sql"
url = "postgres://postgres@127.0.0.1:5432/test"
[source.streams.orders]
table = "$TABLE"
$stream
[sink]
type = "file"
dir = "out"
TOML
  measure "$name" "$REL/tributary" run --once --no-progress --log-level warn "$WORK/run/sql.toml"
  local out
  out=$(cat "$WORK/run"/out/*.ndjson | wc -l)
  [ "$out" -eq "$ROWS" ] || { echo "expected $ROWS output records, got $out" >&2; exit 1; }
}

run_tributary "tributary sql -> file (full refresh)" ""
run_tributary "tributary sql -> file (incremental, timestamp)" \
  'incremental = { column = "created_at", kind = "timestamp" }'
