#!/usr/bin/env bash
# Push sources (issue 5's targets), release build, side by side with a bare
# client of the same transport:
#
#   WebSocket: a local feed of N ~100-byte JSON messages (testkit's wssim);
#     `wssim read` (read and write each message as a line, no parsing) beside
#     `tributary run` (websocket source → file sink, checkpoints, fsync).
#   MQTT QoS 1: a paced publisher (mqttbench, RATE/s, each message carries
#     its publish time) into Mosquitto on 127.0.0.1:1883; `mqttbench
#     subscribe` (acknowledges at once, keeps nothing) beside `tributary run`
#     (mqtt source, acknowledged after commit → file sink). Latency is the
#     sink record's `_ingested_at` (unix ms) minus the carried time.
#
#   bench/streaming.sh                 # WS 1M messages; MQTT 200k at 25k/s
#   WS_N=200000 MQTT_N=100000 MQTT_RATE=20000 bench/streaming.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary/target}"
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
scripts/services >&2

cargo build --release --locked -p tributary-cli -p tributary-testkit --bins >&2
REL="$CARGO_TARGET_DIR/release"
WS_N="${WS_N:-1000000}"
MQTT_N="${MQTT_N:-200000}"
MQTT_RATE="${MQTT_RATE:-25000}"
WORK="${BENCH_DIR:-$(mktemp -d /tmp/tributary-streaming-bench.XXXXXX)}"
echo "work dir: $WORK" >&2
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

lines() { cat "$1"/*.ndjson 2>/dev/null | wc -l; }
now() { date +%s.%N; }

# Runs tributary on $1 until $2 output lines exist in $3, then SIGTERM;
# prints "secs peak_rss_kib" (secs: start to the last line written).
run_until() {
  local cfg=$1 want=$2 out=$3
  local start; start=$(now)
  /usr/bin/time -f "%M" -o "$WORK/rss.txt" "$REL/tributary" run --no-progress --log-level warn "$cfg" \
    2>"$WORK/tributary.err" &
  local pid=$!
  while [ "$(lines "$out")" -lt "$want" ]; do
    kill -0 $pid 2>/dev/null || { cat "$WORK/tributary.err" >&2; exit 1; }
    sleep 0.05
  done
  local end; end=$(now)
  pkill -TERM -P $pid; wait $pid || true
  echo "$(echo "$end - $start" | bc -l) $(tail -1 "$WORK/rss.txt")"
}

row() { # name records secs rss_kib extra
  awk -v n="$1" -v r="$2" -v s="$3" -v k="$4" -v x="${5:-}" 'BEGIN {
    if (s < 0.001) s = 0.001;
    printf "| %-44s | %9d | %7.2f | %10.0f | %8.1f | %s\n", n, r, s, r / s, k / 1024, x }'
}

echo "| workload                                     |   records |    secs |  records/s | peak RSS MiB | latency"
echo "|----------------------------------------------|-----------|---------|------------|--------------|--------"

# --- WebSocket -------------------------------------------------------------
ws_serve() {
  "$REL/wssim" serve --total "$WS_N" --bytes 100 > "$WORK/wssim.url" &
  PIDS+=($!)
  for _ in $(seq 1 100); do [ -s "$WORK/wssim.url" ] && break; sleep 0.05; done
  head -1 "$WORK/wssim.url"
}
URL=$(ws_serve)
/usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$REL/wssim" read "$URL" "$WS_N" "$WORK/ws-baseline.ndjson"
read -r secs rss < "$WORK/time.txt"
row "wssim read → lines (baseline)" "$WS_N" "$secs" "$rss"

URL=$(ws_serve)   # a fresh feed for tributary
rm -rf "$WORK/ws"; mkdir -p "$WORK/ws"
cat > "$WORK/ws/ws.toml" <<TOML
name = "wsbench"
[source]
type = "websocket"
url = "$URL"
[sink]
type = "file"
dir = "out"
[runtime]
flush_interval = "200ms"   # so the output's last lines show up promptly
TOML
read -r secs rss < <(run_until "$WORK/ws/ws.toml" "$WS_N" "$WORK/ws/out")
row "tributary websocket → file" "$WS_N" "$secs" "$rss"

# --- MQTT QoS 1 --------------------------------------------------------------
TOPIC="tributary-bench/$$"
"$REL/mqttbench" subscribe "$TOPIC/base" "$MQTT_N" > "$WORK/sub.txt" 2>"$WORK/sub.err" &
SUB=$!
for _ in $(seq 1 100); do grep -q subscribed "$WORK/sub.txt" 2>/dev/null && break; sleep 0.05; done
start=$(now)
"$REL/mqttbench" publish "$TOPIC/base" "$MQTT_N" "$MQTT_RATE" 2>"$WORK/pub.err"
wait $SUB
end=$(now)
row "mqttbench subscribe, QoS 1 (baseline)" "$MQTT_N" "$(echo "$end - $start" | bc -l)" 0 \
  "$(grep samples "$WORK/sub.txt") at $MQTT_RATE/s offered"

rm -rf "$WORK/mqtt"; mkdir -p "$WORK/mqtt"
cat > "$WORK/mqtt/mqtt.toml" <<TOML
name = "mqttbench"
[source]
type = "mqtt"
url = "mqtt://127.0.0.1:1883"
client_id = "tributary-bench-$$"
[[source.topic_mappings]]
source_pattern = "$TOPIC/data"
qos = 1
[sink]
type = "file"
dir = "out"
[metadata]
ingested_at_format = "unix_ms"
[runtime]
# Acknowledgements wait for the commit: commit often so the broker's
# in-flight window is released promptly.
flush_interval = "20ms"
TOML
# Create the session (subscription) first, then measure from the first publish.
"$REL/tributary" run --no-progress --log-level warn "$WORK/mqtt/mqtt.toml" 2>/dev/null &
P=$!; sleep 1; kill -TERM $P; wait $P || true
rm -rf "$WORK/mqtt/out"
/usr/bin/time -f "%M" -o "$WORK/rss.txt" "$REL/tributary" run --no-progress --log-level warn "$WORK/mqtt/mqtt.toml" \
  2>"$WORK/tributary.err" &
TP=$!
sleep 0.5
start=$(now)
"$REL/mqttbench" publish "$TOPIC/data" "$MQTT_N" "$MQTT_RATE" 2>"$WORK/pub.err"
while [ "$(lines "$WORK/mqtt/out")" -lt "$MQTT_N" ]; do
  kill -0 $TP 2>/dev/null || { cat "$WORK/tributary.err" >&2; exit 1; }
  sleep 0.05
done
end=$(now)
pkill -TERM -P $TP; wait $TP || true
lat=$("$REL/mqttbench" latency _ingested_at "$WORK/mqtt/out"/*.ndjson)
row "tributary mqtt QoS 1 → file" "$MQTT_N" "$(echo "$end - $start" | bc -l)" "$(tail -1 "$WORK/rss.txt")" \
  "$lat at $MQTT_RATE/s offered"
