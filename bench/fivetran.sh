#!/usr/bin/env bash
# Fivetran bridge benchmark (issue 24): the example connector
# (examples/fivetran, seed 001's shape) reads N items from the local REST
# simulator, once with the SDK's own local runner (`fivetran debug`, which
# writes DuckDB) and once through tributary (`type = "fivetran"` → file
# sink, checkpoint per page). Both run the same connector code with the
# same SDK from the virtualenv scripts/setup installs; nothing is fetched
# from the network (DO_NOT_TRACK turns the SDK's telemetry off).
#
#   bench/fivetran.sh               # 100k items, 5 alternating pairs
#   ITEMS=20000 RUNS=3 bench/fivetran.sh
#   BIN=target/debug bench/fivetran.sh  # binaries already built (tributary, restsim): no build
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary/target}"
export DO_NOT_TRACK=1
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
TOOLS="${TRIBUTARY_TOOLS:-$HOME/.cache/tributary/tools}"
[ -x "$TOOLS/fivetran/bin/fivetran" ] || { echo "run scripts/setup first (the fivetran-connector-sdk virtualenv)" >&2; exit 1; }

if [ -z "${BIN:-}" ]; then
  cargo build --release --locked -p tributary-cli -p tributary-testkit --bins >&2
  BIN="$CARGO_TARGET_DIR/release"
fi
ITEMS="${ITEMS:-100000}"
WORK="${BENCH_DIR:-$(mktemp -d /tmp/tributary-fivetran-bench.XXXXXX)}"
mkdir -p "$WORK"
echo "work dir: $WORK" >&2

"$BIN/restsim" --items "$ITEMS" --port 0 --max-page-size 1000 > "$WORK/sim.url" 2>"$WORK/sim.err" &
SIM=$!
trap 'kill $SIM 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [ -s "$WORK/sim.url" ] && break; sleep 0.1; done
BASE=$(head -1 "$WORK/sim.url")
echo "simulator: $BASE" >&2

mkdir -p "$WORK/project"
cp "$ROOT/examples/fivetran/connector.py" "$ROOT/examples/fivetran/api.py" "$ROOT/examples/fivetran/requirements.txt" "$WORK/project/"
cat > "$WORK/project/configuration.json" <<JSON
{"base_url": "$BASE", "bearer_token": "bench"}
JSON
cat > "$WORK/fivetran.toml" <<TOML
name = "bench"
[source]
type = "fivetran"
python = "$TOOLS/fivetran/bin/python"
project = "$WORK/project"
configuration_file = "$WORK/project/configuration.json"
[sink]
type = "file"
dir = "out"
TOML

measure() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" >"$WORK/stdout.txt" 2>"$WORK/stderr.txt" || {
    cat "$WORK/stdout.txt" "$WORK/stderr.txt" >&2; exit 1; }
  read -r secs rss_kib < "$WORK/time.txt"
  awk -v n="$name" -v r="$ITEMS" -v s="$secs" -v k="$rss_kib" 'BEGIN {
    if (s < 0.001) s = 0.001;
    printf "| %-40s | %9d | %7.2f | %12.0f | %8.1f |\n", n, r, s, r / s, k / 1024 }'
  echo "$secs" > "$WORK/last_secs"
}

echo "| workload                                 |   records |   secs |    records/s | peak RSS MiB |"
echo "|------------------------------------------|-----------|--------|--------------|--------------|"
RUNS="${RUNS:-5}"
: > "$WORK/ratios"
for _ in $(seq 1 "$RUNS"); do
  # Fresh state each time: the first sync reads every item.
  rm -rf "$WORK/project/files"
  measure "fivetran debug (SDK -> DuckDB)" \
    env -C "$WORK/project" PATH="$TOOLS/fivetran/bin:$PATH" "$TOOLS/fivetran/bin/fivetran" debug "$WORK/project"
  grep -q "Upserts *| *$ITEMS " "$WORK/stdout.txt" "$WORK/stderr.txt" || {
    echo "fivetran debug did not upsert $ITEMS rows" >&2; cat "$WORK/stdout.txt" >&2; exit 1; }
  base=$(cat "$WORK/last_secs")
  rm -rf "$WORK/run"; mkdir -p "$WORK/run"; cp "$WORK/fivetran.toml" "$WORK/run/"
  measure "tributary fivetran -> file" "$BIN/tributary" run --once --no-progress --log-level warn "$WORK/run/fivetran.toml"
  out=$(cat "$WORK/run"/out/bench.items-*.ndjson | wc -l)
  [ "$out" -eq "$ITEMS" ] || { echo "expected $ITEMS output records, got $out" >&2; exit 1; }
  awk -v b="$base" -v t="$(cat "$WORK/last_secs")" 'BEGIN { printf "%.3f\n", t / b }' >> "$WORK/ratios"
done
sort -n "$WORK/ratios" | awk '{ r[NR] = $1 } END {
  printf "\ntributary / fivetran debug wall time over %d pairs: median %.2f (min %.2f, max %.2f)\n",
    NR, r[int((NR + 1) / 2)], r[1], r[NR] }'
