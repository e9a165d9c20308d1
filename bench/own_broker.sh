# Sourced by the Kafka benchmarks: one Apache Kafka broker of the
# benchmark's own (scripts/kafka run), its data under $WORK/broker, on a free
# port; stopped when the script exits. Sets PORT, BROKER (exported),
# broker_pid, and free_port for other listeners.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
export BROKER="127.0.0.1:$PORT"
rm -rf "$WORK/broker"
scripts/kafka run "$WORK/broker" "$PORT" >"$WORK/broker.log" 2>&1 &
broker_pid=$!
cleanup() {
  kill "$broker_pid" 2>/dev/null || true
  wait "$broker_pid" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 600); do
  grep -q "Kafka Server started" "$WORK/broker.log" 2>/dev/null && break
  kill -0 "$broker_pid" 2>/dev/null || { cat "$WORK/broker.log" >&2; exit 1; }
  sleep 0.1
done
