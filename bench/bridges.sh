#!/usr/bin/env bash
# Singer and Airbyte bridges: what tributary adds to a connector's own run.
#
#   Singer:  tap-postgres over a ROWS-row table, piped to target-jsonl,
#            beside `tributary run --once` (singer source → file sink).
#   Airbyte: source-faker (users, COUNT records) `read` to a file, beside
#            `tributary run --once` (airbyte source → file sink).
#
# Both sides start the same Python connector once (tributary's discovery is
# a second start, counted in its time: that is what a user waits for); each
# tributary run is also measured with the baseline's catalog file
# (`catalog =`), one start like the baseline.
# Target: tributary adds at most 10% wall time.
#
#   bench/bridges.sh
#   ROWS=200000 COUNT=50000 ROUNDS=3 bench/bridges.sh
#   BIN=target/debug/tributary bench/bridges.sh   # a binary already built
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary/target}"
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
scripts/setup >/dev/null

if [ -z "${BIN:-}" ]; then
  cargo build --release --locked -p tributary-cli --bins >&2
  BIN="$CARGO_TARGET_DIR/release/tributary"
fi
ROUNDS="${ROUNDS:-3}"
TOOLS="${TRIBUTARY_TOOLS:-$HOME/.cache/tributary/tools}"
ROWS="${ROWS:-200000}"
COUNT="${COUNT:-50000}"
SCHEMA=bench_singer
PSQL=(psql -h 127.0.0.1 -U postgres -X -q -v ON_ERROR_STOP=1 test)
WORK="${BENCH_DIR:-$(mktemp -d /tmp/tributary-bridges-bench.XXXXXX)}"
mkdir -p "$WORK"
echo "work dir: $WORK" >&2

have=-1
if [ "$("${PSQL[@]}" -Atc "SELECT to_regclass('$SCHEMA.items') IS NOT NULL")" = t ]; then
  have=$("${PSQL[@]}" -Atc "SELECT count(*) FROM $SCHEMA.items")
fi
if [ "$have" != "$ROWS" ]; then
  echo "creating $SCHEMA.items with $ROWS rows" >&2
  "${PSQL[@]}" <<SQL
DROP SCHEMA IF EXISTS $SCHEMA CASCADE;
CREATE SCHEMA $SCHEMA;
CREATE TABLE $SCHEMA.items (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12,2), updated_at timestamptz NOT NULL);
INSERT INTO $SCHEMA.items
SELECT i, 'item ' || i, (i % 10000) / 100.0, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second'
FROM generate_series(1, $ROWS) i;
VACUUM ANALYZE $SCHEMA.items;
SQL
fi

measure() { # name records command...
  local name=$1 n=$2; shift 2
  /usr/bin/time -f "%e" -o "$WORK/time.txt" "$@" >/dev/null 2>"$WORK/stderr.txt" || {
    tail -20 "$WORK/stderr.txt" >&2; exit 1; }
  local secs; secs=$(cat "$WORK/time.txt")
  printf "| %-52s | %8d | %7.2f | %9.0f |\n" "$name" "$n" "$secs" "$(echo "$n / $secs" | bc -l)"
  echo "$secs" > "$WORK/last.txt"
}

# A timed run counts only if it delivered every record: an empty or short
# output (a connector that failed quietly) would make a fast, false figure.
check_records() { # what expected got
  [ "$3" -eq "$2" ] || { echo "$1: $3 records, expected $2" >&2; exit 1; }
}
lines_in() { cat "$1"/* 2>/dev/null | wc -l; }

# ours NAME RECORDS STATE TOML WHAT: one tributary run from empty output and
# state, its records checked, and the wall time it adds to this round's
# baseline ($base).
ours() {
  local name=$1 n=$2 state=$3 toml=$4 what=$5
  rm -rf "$WORK/out" "$WORK/$state.state"
  measure "$name" "$n" "$BIN" run --once "$WORK/$toml.toml"
  check_records "$what" "$n" "$(lines_in "$WORK/out")"
  printf "|   added wall time: %+.1f%% |\n" "$(echo "($(cat "$WORK/last.txt") / $base - 1) * 100" | bc -l)"
}

# --- Singer ------------------------------------------------------------
cat > "$WORK/tap.json" <<JSON
{"host": "127.0.0.1", "port": 5432, "user": "postgres", "password": "postgres", "database": "test", "filter_schemas": ["$SCHEMA"]}
JSON
"$TOOLS/tap-postgres/bin/tap-postgres" --config "$WORK/tap.json" --discover 2>"$WORK/discover.err" > "$WORK/catalog.json" || {
  tail -5 "$WORK/discover.err" >&2; exit 1; }
python3 - "$WORK/catalog.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
for s in c["streams"]:
    for m in s["metadata"]:
        m["metadata"]["selected"] = True
        if m["breadcrumb"] == []:
            m["metadata"].update({"replication-method": "INCREMENTAL", "replication-key": "updated_at"})
json.dump(c, open(p, "w"))
PY
cat > "$WORK/singer.toml" <<TOML
name = "bench_singer"
[source]
type = "singer"
command = ["$TOOLS/tap-postgres/bin/tap-postgres"]
config = { host = "127.0.0.1", port = 5432, user = "postgres", password = "postgres", database = "test", filter_schemas = ["$SCHEMA"] }
streams = ["$SCHEMA-items"]
replication = { "$SCHEMA-items" = { method = "INCREMENTAL", key = "updated_at" } }
[sink]
type = "file"
dir = "$WORK/out"
[state]
dir = "$WORK/singer.state"
[runtime]
batch_size = 5000
TOML
sed "s|^streams = |catalog = \"$WORK/catalog.json\"\nstreams = |" "$WORK/singer.toml" > "$WORK/singer_catalog.toml"
# target-jsonl writes into its destination folder.
echo "{\"destination_path\": \"$WORK/jsonl\"}" > "$WORK/target.json"

echo "| workload                                             |  records |    secs |  records/s |"
echo "|------------------------------------------------------|----------|---------|------------|"
for round in $(seq 1 "$ROUNDS"); do
  rm -rf "$WORK/jsonl" && mkdir -p "$WORK/jsonl"
  measure "tap-postgres | target-jsonl (round $round)" "$ROWS" bash -c \
    "'$TOOLS/tap-postgres/bin/tap-postgres' --config '$WORK/tap.json' --catalog '$WORK/catalog.json' 2>/dev/null | '$TOOLS/target-jsonl/bin/target-jsonl' --config '$WORK/target.json'"
  check_records target-jsonl "$ROWS" "$(lines_in "$WORK/jsonl")"
  base=$(cat "$WORK/last.txt")
  ours "tributary singer tap-postgres -> file (round $round)" "$ROWS" singer singer "tributary singer"
  # The same with the baseline's catalog file (`catalog =`, as a Meltano
  # project's properties file is used): one Python start, as the baseline.
  ours "tributary singer, catalog file (round $round)" "$ROWS" singer singer_catalog "tributary singer (catalog)"
done

# --- Airbyte -----------------------------------------------------------
cat > "$WORK/faker.json" <<JSON
{"count": $COUNT, "seed": 1, "records_per_slice": 1000, "always_updated": false, "parallelism": 1}
JSON
cat > "$WORK/faker_catalog.json" <<'JSON'
{"streams": [{"stream": {"name": "users", "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"], "source_defined_cursor": true, "default_cursor_field": ["updated_at"]}, "sync_mode": "incremental", "destination_sync_mode": "append", "cursor_field": ["updated_at"], "primary_key": [["id"]]}]}
JSON
cat > "$WORK/airbyte.toml" <<TOML
name = "bench_airbyte"
[source]
type = "airbyte"
command = ["$TOOLS/source-faker/bin/source-faker"]
config = { count = $COUNT, seed = 1, records_per_slice = 1000, always_updated = false, parallelism = 1 }
streams = ["users"]
[sink]
type = "file"
dir = "$WORK/out"
[state]
dir = "$WORK/airbyte.state"
[runtime]
batch_size = 5000
TOML
# The catalog `discover` prints, saved once, as an Airbyte connection keeps it.
"$TOOLS/source-faker/bin/source-faker" discover --config "$WORK/faker.json" 2>/dev/null \
  | grep '"type": *"CATALOG"' | head -1 > "$WORK/faker_discovered.json"
[ -s "$WORK/faker_discovered.json" ] || { echo "source-faker discover sent no CATALOG" >&2; exit 1; }
sed "s|^streams = |catalog = \"$WORK/faker_discovered.json\"\nstreams = |" "$WORK/airbyte.toml" > "$WORK/airbyte_catalog.toml"
for round in $(seq 1 "$ROUNDS"); do
  measure "source-faker read > file (round $round)" "$COUNT" bash -c \
    "'$TOOLS/source-faker/bin/source-faker' read --config '$WORK/faker.json' --catalog '$WORK/faker_catalog.json' > '$WORK/faker.jsonl' 2>/dev/null"
  check_records "source-faker read" "$COUNT" "$(grep -c '"type": *"RECORD"' "$WORK/faker.jsonl")"
  base=$(cat "$WORK/last.txt")
  ours "tributary airbyte source-faker -> file (round $round)" "$COUNT" airbyte airbyte "tributary airbyte"
  ours "tributary airbyte, catalog file (round $round)" "$COUNT" airbyte airbyte_catalog "tributary airbyte (catalog)"
done
