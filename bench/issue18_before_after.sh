#!/usr/bin/env bash
# Issue 18: records lost (or cut, or written invalid) per failure class, with
# the binary before the issue's work and after it, on the same inputs.
#
#   bench/issue18_before_after.sh BIN_BEFORE BIN_AFTER
#
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, database test) and
# GNU time. Each scenario prints one row: class, before, after.
set -euo pipefail
BEFORE=$1 AFTER=$2
WORK=$(mktemp -d /tmp/issue18.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export PGOPTIONS="-c client_min_messages=warning"
PSQL=(psql -h 127.0.0.1 -U postgres -d test -qtA)

file_config() { # DIR FORMAT
  cat > "$1/c.toml" <<TOML
name = "c"
[source]
type = "file"
[source.streams.s]
path = "in/*"
format = "$2"
[sink]
type = "file"
dir = "out"
[bad_records]
policy = "dead_letter"
dead_letter_path = "dlq.ndjson"
TOML
}

run_file() { # BIN DIR
  (cd "$2" && /usr/bin/time -f "%M" -o rss.txt "$1" run --no-progress --log-level error c.toml >/dev/null 2>&1 || true)
}

# 1. A CSV quote left open: valid rows after it lost (issue's own input).
csv_quote() {
  local d="$WORK/csv-$1"; mkdir -p "$d/in"; file_config "$d" csv
  printf 'id,v\nA,1\nC,"abc\nB,2\nD,4\n' > "$d/in/a.csv"
  run_file "$2" "$d"
  python3 - "$d" <<'PY'
import json, sys, glob
ids = {json.loads(l)["id"] for f in glob.glob(sys.argv[1] + "/out/*.ndjson") for l in open(f)}
print(len({"A", "B", "D"} - ids))
PY
}

# 2. A bad NDJSON line of 1.5 MiB: bytes of it missing from the dead letter.
over_cap() {
  local d="$WORK/cap-$1"; mkdir -p "$d/in"; file_config "$d" ndjson
  python3 -c "
import sys
sys.stdout.write('{\"id\": 1, \"v\": \"' + 'x' * (1536 * 1024) + '\"\n{\"id\": 2}\n')" > "$d/in/a.ndjson"
  run_file "$2" "$d"
  python3 - "$d" <<'PY'
import json, sys
want = open(sys.argv[1] + "/in/a.ndjson").read().split("\n")[0]
try:
    got = json.loads(open(sys.argv[1] + "/dlq.ndjson").readline())["raw"]
except Exception:
    got = ""
print(len(want) - len(got))
PY
}

# 3. Values strict parsers refuse (1e999, a lone \ud800) and a `\r` inside a
#    line: output lines a strict reader rejects or sees split.
strict() {
  local d="$WORK/strict-$1"; mkdir -p "$d/in"; file_config "$d" ndjson
  printf '{"id": 1, "v": 1e999}\n{"id": 2, "s": "\\ud800"}\n{"id": 3,\r"v": 2}\n{"id": 4}\n' > "$d/in/a.ndjson"
  run_file "$2" "$d"
  python3 - "$d" <<'PY'
import json, sys, glob
bad = 0
for f in glob.glob(sys.argv[1] + "/out/*.ndjson"):
    for line in open(f, newline="").read().split("\n"):
        if not line:
            continue
        # A strict reader: no infinities, no lone surrogates, one record per
        # line whatever the line-break convention.
        if "\r" in line:
            bad += 1
            continue
        def no_inf(x):
            v = float(x)
            if v in (float("inf"), float("-inf")):
                raise ValueError("out of range")
            return v
        try:
            v = json.loads(line, parse_float=no_inf)
            json.dumps(v, ensure_ascii=False).encode("utf-8")
        except Exception:
            bad += 1
print(bad)
PY
}

# 4. Memory with one 100 MB CSV field (peak RSS, MiB).
memory() {
  local d="$WORK/mem-$1"; mkdir -p "$d/in"; file_config "$d" csv
  python3 -c "
import sys
sys.stdout.write('id,v\n1,\"' + 'x' * (100 << 20) + '\"\n2,after\n')" > "$d/in/a.csv"
  run_file "$2" "$d"
  echo $(( $(cat "$d/rss.txt") / 1024 ))
}

# 5. sql, a naive timestamp cursor in America/New_York across the 2024-11-03
#    fall-back: rows lost (see crates/cli/tests/sql.rs for the same steps).
sql_dst() {
  local d="$WORK/sql-$1" t="tt_issue18_$1_$$"; mkdir -p "$d"
  "${PSQL[@]}" -c "DROP TABLE IF EXISTS $t; CREATE TABLE $t (id bigint PRIMARY KEY, ts timestamp NOT NULL)"
  ins() { for r in "$@"; do "${PSQL[@]}" -c "INSERT INTO $t VALUES (${r%%=*}, '2024-11-03 ${r#*=}')"; done; }
  run_at() {
    local lag=$(( $(date +%s) - $(date -d "$1" +%s) ))
    cat > "$d/c.toml" <<TOML
name = "db"
[source]
type = "sql"
url = "postgres://postgres@127.0.0.1:5432/test"
timezone = "America/New_York"
[source.streams.s]
table = "$t"
incremental = { column = "ts", kind = "timestamp", lag = "${lag}s" }
[sink]
type = "file"
dir = "out"
TOML
    (cd "$d" && "$2" run --once --no-progress --log-level error c.toml >/dev/null 2>&1)
  }
  ins 1=00:30 2=01:10 3=01:40 4=01:50
  run_at 2024-11-03T05:55:00Z "$2"
  ins 5=01:05 6=01:20
  run_at 2024-11-03T06:30:00Z "$2"
  ins 7=01:45 8=02:05
  run_at 2024-11-03T07:10:00Z "$2"
  run_at 2024-11-03T07:30:00Z "$2"
  "${PSQL[@]}" -c "DROP TABLE $t"
  python3 - "$d" <<'PY'
import json, sys, glob
ids = {json.loads(l)["id"] for f in glob.glob(sys.argv[1] + "/out/*.ndjson") for l in open(f)}
print(len(set(range(1, 9)) - ids))
PY
}

printf '| %-62s | %8s | %8s |\n' "failure class" before after
printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..64})" ---------- ----------
row() { printf '| %-62s | %8s | %8s |\n' "$1" "$($2 b "$BEFORE")" "$($2 a "$AFTER")"; }
row "CSV quote left open: valid rows lost (of 3)" csv_quote
row "bad line of 1.5 MiB: bytes missing from its dead letter" over_cap
row "1e999, lone \\ud800, \\r in a line: invalid output lines (of 3)" strict
row "one 100 MB CSV field: peak RSS, MiB" memory
row "sql naive cursor across a fall-back: rows lost (of 8)" sql_dst
