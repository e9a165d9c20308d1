#!/usr/bin/env bash
# tributary beside the tools our users run today, on the workloads of
# bench/http.sh, bench/sql.sh and bench/kafka.sh, in alternating rounds
# (the order of the tools rotates every round), every run's record count
# checked (a wrong count stops the script):
#
# - rest: the testkit's REST simulator serves ITEMS records in pages of
#   1,000 (`/items/offset`): tributary (http source → file sink), dlt 1.31.0
#   (`rest_api` source → filesystem destination, jsonl, uncompressed), and
#   Airbyte's `source-declarative-manifest` (airbyte-cdk 7.39.1, a low-code
#   manifest for the simulator) with its record messages written to a file;
# - sql: a PostgreSQL table of ROWS rows (bench/sql_table.sh, bench_sql's
#   columns in a table of its own, bench_peers): tributary
#   (sql source, full refresh → file sink) and dlt's `sql_database` source
#   (SQLAlchemy backend, its default) → filesystem destination, jsonl;
# - kafka: a file of LINES NDJSON lines into Apache Kafka: Kafka Connect
#   standalone with FileStreamSourceConnector and tributary (file source →
#   kafka sink), run by `ROWS=connect bench/kafka.sh`.
#
# The Python tools live in cached virtualenvs under
# ~/.cache/tributary/tools (TRIBUTARY_TOOLS), created only when missing or
# at another version. At the end: a table of medians, the per-round ratios,
# and a bar chart ($WORK/peers.png, matplotlib from the dlt venv).
#
#   bench/peers.sh                                # 1M each, 3 rounds
#   ITEMS=200000 ROWS=200000 LINES=200000 RUNS=3 bench/peers.sh
#   WORKLOADS="rest sql" bench/peers.sh           # skip Kafka
#   CHART=bench/peers.png bench/peers.sh          # where the chart goes
#   BIN_DIR=$CARGO_TARGET_DIR/debug WORKLOADS=rest ITEMS=5000 RUNS=1 bench/peers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary/target}"
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }

ITEMS="${ITEMS:-1000000}"
ROWS="${ROWS:-1000000}"
LINES="${LINES:-1000000}"
RUNS="${RUNS:-3}"
WORKLOADS="${WORKLOADS:-rest sql kafka}"
PAGE=1000
TOOLS="${TRIBUTARY_TOOLS:-$HOME/.cache/tributary/tools}"
DLT_VERSION=1.31.0
AIRBYTE_CDK_VERSION=7.39.1
DLT_VENV="$TOOLS/dlt-$DLT_VERSION"
AIRBYTE_VENV="$TOOLS/airbyte-cdk"
WORK="${BENCH_DIR:-$(mktemp -d /tmp/tributary-peers-bench.XXXXXX)}"
mkdir -p "$WORK"
CHART="${CHART:-$WORK/peers.png}"
echo "work dir: $WORK" >&2

# ensure_venv DIR CHECK_PYTHON PIP_ARGS...: DIR gets a venv with PIP_ARGS
# installed unless CHECK_PYTHON (a Python snippet) already succeeds there.
ensure_venv() {
  local dir=$1 check=$2; shift 2
  "$dir/bin/python" -c "$check" 2>/dev/null && return 0
  echo "installing into $dir: $*" >&2
  { python3 -m venv "$dir" && "$dir/bin/pip" install -q "$@"; } || {
    echo "bench/peers.sh: \`python3 -m venv $dir && $dir/bin/pip install $*\` failed" >&2
    exit 1
  }
  "$dir/bin/python" -c "$check" || {
    echo "bench/peers.sh: $dir still fails \`$check\` after pip install $*" >&2; exit 1; }
}
ensure_venv "$DLT_VENV" \
  "import dlt, sqlalchemy, psycopg2, matplotlib; assert dlt.__version__ == '$DLT_VERSION', dlt.__version__" \
  "dlt==$DLT_VERSION" sqlalchemy==2.1.9 psycopg2-binary==2.9.13 matplotlib==3.11.2
case " $WORKLOADS " in *" rest "*)
  ensure_venv "$AIRBYTE_VENV" \
    "import importlib.metadata as m; assert m.version('airbyte-cdk') == '$AIRBYTE_CDK_VERSION'" \
    "airbyte-cdk==$AIRBYTE_CDK_VERSION" ;;
esac

# BIN_DIR=dir: binaries built elsewhere (a trial with debug builds while
# the release build runs); the figures are only comparable for release.
if [ -n "${BIN_DIR:-}" ]; then
  REL=$BIN_DIR
else
  cargo build --release --locked -p tributary-cli -p tributary-testkit --bins >&2
  REL="$CARGO_TARGET_DIR/release"
fi

results="$WORK/results.tsv"   # workload, tool, round, secs, peak RSS KiB, records
: >"$results"

# measure WORKLOAD TOOL ROUND EXPECTED COUNT_CMD -- COMMAND...: times
# COMMAND, then runs COUNT_CMD (a shell snippet printing the records that
# arrived) and stops the script unless it prints EXPECTED.
measure() {
  local workload=$1 tool=$2 round=$3 expected=$4 count_cmd=$5; shift 6
  /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" >"$WORK/stdout.txt" 2>"$WORK/stderr.txt" || {
    echo "$tool ($workload) failed: $*" >&2; tail -30 "$WORK/stderr.txt" >&2; exit 1; }
  local secs rss got
  read -r secs rss < <(tail -n 1 "$WORK/time.txt")
  got=$(bash -c "$count_cmd")
  [ "$got" = "$expected" ] || {
    echo "$tool ($workload): expected $expected records, got $got" >&2; exit 1; }
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$workload" "$tool" "$round" "$secs" "$rss" "$got" >>"$results"
  awk -v w="$workload" -v n="$tool" -v r="$round" -v c="$got" -v s="$secs" -v k="$rss" 'BEGIN {
    if (s < 0.001) s = 0.001;
    printf "| %-5s | %-40s | %d | %9d | %7.2f | %10.0f | %8.1f |\n", w, n, r, c, s, c / s, k / 1024 }'
}

# rotate ROUND WORDS...: WORDS rotated left by ROUND - 1, so that every
# tool takes every place in the order over the rounds.
rotate() {
  local round=$1; shift
  local n=$# i
  for ((i = 0; i < n; i++)); do
    local j=$(((i + round - 1) % n + 1))
    printf '%s\n' "${!j}"
  done
}

cat >"$WORK/dlt_run.py" <<'PY'
# dlt pipeline for the benchmark: `rest BASE_URL OUT` or `sql URL TABLE OUT`.
import sys, dlt
from dlt.destinations import filesystem

kind, out = sys.argv[1], sys.argv[-1]
if kind == "rest":
    from dlt.sources.rest_api import rest_api_source
    source = rest_api_source({
        "client": {
            "base_url": sys.argv[2],
            "paginator": {"type": "offset", "limit": 1000, "offset_param": "offset",
                          "limit_param": "limit", "total_path": "total"},
        },
        "resources": [{"name": "items",
                       "endpoint": {"path": "items/offset", "data_selector": "data"}}],
    })
else:
    from dlt.sources.sql_database import sql_table
    source = sql_table(credentials=sys.argv[2], table=sys.argv[3])
pipeline = dlt.pipeline(pipeline_name=f"bench_{kind}", pipelines_dir=f"{out}/.dlt",
                        destination=filesystem(bucket_url=f"file://{out}/data"),
                        dataset_name="bench")
info = pipeline.run(source, loader_file_format="jsonl")
info.raise_on_failed_jobs()
PY
# One file per table; uncompressed so that the output is the same JSON
# lines the others write.
# (The sql_database source's rows go through another writer stage, which
# reads the setting under its own section.)
export DATA_WRITER__DISABLE_COMPRESSION=true NORMALIZE__DATA_WRITER__DISABLE_COMPRESSION=true \
  EXTRACT__DATA_WRITER__DISABLE_COMPRESSION=true RUNTIME__LOG_LEVEL=WARNING

rest_rounds() {
  "$REL/restsim" --items "$ITEMS" --port 0 >"$WORK/sim.url" 2>"$WORK/sim.err" &
  local sim=$!
  trap 'kill '"$sim"' 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do [ -s "$WORK/sim.url" ] && break; sleep 0.1; done
  local base
  base=$(head -1 "$WORK/sim.url")
  cat >"$WORK/http.toml" <<TOML
name = "bench"
[source]
type = "http"
base_url = "$base"
[source.streams.items]
path = "/items/offset"
records = "data"
primary_key = ["id"]
pagination = { type = "offset", page_size = $PAGE }
[sink]
type = "file"
dir = "out"
TOML
  # The low-code manifest a user would write for this API, handed over
  # the way Airbyte's platform does (`__injected_declarative_manifest`).
  python3 - "$base" "$WORK/airbyte-config.json" "$WORK/airbyte-catalog.json" <<'PY'
import json, sys
base, config_path, catalog_path = sys.argv[1:]
schema = {"type": "object", "additionalProperties": True, "properties": {"id": {"type": "integer"}}}
manifest = {
    "version": "6.7.0", "type": "DeclarativeSource",
    "check": {"type": "CheckStream", "stream_names": ["items"]},
    "spec": {"type": "Spec", "connection_specification": {"type": "object", "properties": {}}},
    "streams": [{
        "type": "DeclarativeStream", "name": "items", "primary_key": ["id"],
        "schema_loader": {"type": "InlineSchemaLoader", "schema": schema},
        "retriever": {
            "type": "SimpleRetriever",
            "requester": {"type": "HttpRequester", "url_base": base, "path": "/items/offset",
                          "http_method": "GET"},
            "record_selector": {"type": "RecordSelector",
                                "extractor": {"type": "DpathExtractor", "field_path": ["data"]}},
            "paginator": {
                "type": "DefaultPaginator",
                "page_token_option": {"type": "RequestOption", "inject_into": "request_parameter",
                                      "field_name": "offset"},
                "page_size_option": {"type": "RequestOption", "inject_into": "request_parameter",
                                     "field_name": "limit"},
                "pagination_strategy": {"type": "OffsetIncrement", "page_size": 1000},
            },
        },
    }],
}
json.dump({"__injected_declarative_manifest": manifest}, open(config_path, "w"))
json.dump({"streams": [{"stream": {"name": "items", "json_schema": schema,
                                   "supported_sync_modes": ["full_refresh"]},
                        "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"}]},
          open(catalog_path, "w"))
PY
  "$REL/fetch_pages" "$base/items/offset" "$PAGE" >/dev/null 2>&1   # warm the simulator
  local round tool
  for round in $(seq 1 "$RUNS"); do
    for tool in $(rotate "$round" tributary dlt airbyte); do
      rm -rf "$WORK/run"; mkdir -p "$WORK/run"
      case $tool in
        tributary)
          cp "$WORK/http.toml" "$WORK/run/"
          measure rest "tributary (http source)" "$round" "$ITEMS" "cat $WORK/run/out/*.ndjson | wc -l" -- \
            "$REL/tributary" run --once --no-progress --log-level warn "$WORK/run/http.toml" ;;
        dlt)
          measure rest "dlt $DLT_VERSION rest_api" "$round" "$ITEMS" "cat $WORK/run/data/bench/items/*.jsonl | wc -l" -- \
            "$DLT_VENV/bin/python" "$WORK/dlt_run.py" rest "$base" "$WORK/run" ;;
        airbyte)
          measure rest "Airbyte CDK $AIRBYTE_CDK_VERSION declarative" "$round" "$ITEMS" \
            "grep -c '\"type\":\"RECORD\"' $WORK/run/records.jsonl" -- \
            bash -c "exec '$AIRBYTE_VENV/bin/source-declarative-manifest' read --config '$WORK/airbyte-config.json' --catalog '$WORK/airbyte-catalog.json' > '$WORK/run/records.jsonl'" ;;
      esac
    done
  done
  kill "$sim" 2>/dev/null || true
  trap - EXIT
}

sql_rounds() {
  scripts/services
  local table=bench_peers url=postgres://postgres@127.0.0.1:5432/test
  PSQL=(psql -h 127.0.0.1 -U postgres -X -q -v ON_ERROR_STOP=1 test)
  . bench/sql_table.sh
  ensure_bench_sql_table "$table" "$ROWS"
  "${PSQL[@]}" -c "\\copy (select row_to_json(t) from $table t) to stdout" >/dev/null  # warm
  cat >"$WORK/sql.toml" <<TOML
name = "bench"
[source]
type = "sql"
url = "$url"
[source.streams.orders]
table = "$table"
[sink]
type = "file"
dir = "out"
TOML
  local round tool
  for round in $(seq 1 "$RUNS"); do
    for tool in $(rotate "$round" tributary dlt); do
      rm -rf "$WORK/run"; mkdir -p "$WORK/run"
      case $tool in
        tributary)
          cp "$WORK/sql.toml" "$WORK/run/"
          measure sql "tributary (sql source, full refresh)" "$round" "$ROWS" "cat $WORK/run/out/*.ndjson | wc -l" -- \
            "$REL/tributary" run --once --no-progress --log-level warn "$WORK/run/sql.toml" ;;
        dlt)
          measure sql "dlt $DLT_VERSION sql_database" "$round" "$ROWS" "cat $WORK/run/data/bench/$table/*.jsonl | wc -l" -- \
            "$DLT_VENV/bin/python" "$WORK/dlt_run.py" sql "postgresql+psycopg2://postgres@127.0.0.1:5432/test" "$table" "$WORK/run" ;;
      esac
    done
  done
}

kafka_rounds() {
  # bench/kafka.sh owns the broker, the input and Kafka Connect; its
  # results come back in its results.tsv (name, round, secs, RSS KiB).
  mkdir -p "$WORK/kafka"
  BENCH_DIR="$WORK/kafka" ROWS=connect LINES="$LINES" RUNS="$RUNS" bench/kafka.sh >&2
  awk -F'\t' -v n="$LINES" 'BEGIN { OFS = "\t" } {
    tool = ($1 ~ /^Kafka Connect/) ? "Kafka Connect standalone, FileStreamSource" : "tributary (file source -> kafka)"
    print "kafka", tool, $2, $3, $4, n }' "$WORK/kafka/results.tsv" >>"$results"
}

echo "| work  | tool                                     | round |   records |    secs |  records/s | peak RSS MiB |"
echo "|-------|------------------------------------------|---|-----------|---------|------------|----------|"
for w in $WORKLOADS; do
  case $w in
    rest) rest_rounds ;;
    sql) sql_rounds ;;
    kafka) kafka_rounds ;;
    *) echo "bench/peers.sh: unknown workload '$w' in WORKLOADS (rest, sql, kafka)" >&2; exit 1 ;;
  esac
done

echo
"$DLT_VENV/bin/python" - "$results" "$CHART" <<'PY'
import collections, statistics, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

rows = collections.defaultdict(dict)   # (workload, tool) -> round -> (secs, rss, records)
for line in open(sys.argv[1]):
    w, tool, rnd, secs, rss, n = line.rstrip("\n").split("\t")
    rows[(w, tool)][rnd] = (max(float(secs), 0.001), int(rss), int(n))

print("| workload | tool | median records/s | median secs | median peak RSS MiB | tributary ÷ tool, per round (median, min – max) |")
print("|---|---|---:|---:|---:|---|")
medians = collections.defaultdict(dict)
for (w, tool), by_round in rows.items():
    secs = statistics.median(s for s, _, _ in by_round.values())
    rss = statistics.median(r for _, r, _ in by_round.values())
    n = next(iter(by_round.values()))[2]
    medians[w][tool] = n / secs
    ours = next(t for (w2, t) in rows if w2 == w and t.startswith("tributary"))
    ratio = ""
    if not tool.startswith("tributary"):
        rs = sorted(by_round[r][0] / rows[(w, ours)][r][0] for r in by_round if r in rows[(w, ours)])
        ratio = f"{statistics.median(rs):.1f}× ({rs[0]:.1f} – {rs[-1]:.1f}); rounds: " + \
            ", ".join(f"{by_round[r][0] / rows[(w, ours)][r][0]:.1f}" for r in sorted(by_round))
    print(f"| {w} | {tool} | {n / secs:,.0f} | {secs:.2f} | {rss / 1024:.1f} | {ratio} |")

fig, axes = plt.subplots(1, len(medians), figsize=(4.5 * len(medians), 4), squeeze=False)
for ax, (w, tools) in zip(axes[0], medians.items()):
    names = list(tools)
    ax.bar(range(len(names)), [tools[t] / 1000 for t in names],
           color=["#1f77b4" if t.startswith("tributary") else "#999999" for t in names])
    ax.set_xticks(range(len(names)), [t.replace(" (", "\n(").replace(" rest_api", "\nrest_api")
                                      .replace(" sql_database", "\nsql_database")
                                      .replace(" declarative", "\ndeclarative")
                                      .replace(", ", ",\n") for t in names], fontsize=7)
    ax.set_title(w)
    ax.set_ylabel("thousand records/s (median)")
fig.suptitle("tributary beside its peers (higher is better)")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
print(f"\nchart: {sys.argv[2]}")
PY
