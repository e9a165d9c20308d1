#!/usr/bin/env bash
# Distributed workers (`tributary worker`) on this machine, against a broker
# of the script's own (scripts/kafka):
#
# 1. Throughput: 6 generator -> kafka connectors (exactly-once, TOTAL
#    records each, no rate limit) on 1 worker, then on 3 workers: records/s
#    from deploy to the last connector finished, and the workers' CPU time
#    per 1000 records (utime + stime from /proc). The cores are shared by
#    the workers and the broker, so the ratio is the figure, not a speed-up.
# 2. Failover: 3 workers, 6 rate-limited connectors; KILLS times, kill -9
#    the worker running the most connectors and measure the time until
#    every one of its connectors has committed again on another worker
#    (`last_commit_at` after the kill, read from a surviving worker's
#    GET /cluster), then start a replacement. Prints the median and range.
#    (The throughput runs' topics are checked exactly-once with
#    read_committed; tests/distributed.rs checks it across kills.)
#
#   bench/distributed.sh                       # TOTAL=200000 KILLS=10
#   KILLS=20 SESSION=6s bench/distributed.sh
#   TRIBUTARY_BIN=target/debug/tributary bench/distributed.sh   # no release build
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tributary/target}"
scripts/kafka install >/dev/null
if [ -z "${TRIBUTARY_BIN:-}" ]; then
  cargo build --release --locked -p tributary-cli -p tributary-testkit --bins >&2
  TRIBUTARY_BIN="$CARGO_TARGET_DIR/release/tributary"
  EXACTLY="$CARGO_TARGET_DIR/release/kafka_exactly"
else
  EXACTLY="${KAFKA_EXACTLY:-$(dirname "$TRIBUTARY_BIN")/kafka_exactly}"
fi
export TRIBUTARY_BIN EXACTLY
export TOTAL="${TOTAL:-200000}" KILLS="${KILLS:-10}" SESSION="${SESSION:-6s}" RATE="${RATE:-200}"
WORK="${BENCH_DIR:-$(mktemp -d /tmp/tributary-distributed.XXXXXX)}"
mkdir -p "$WORK"
export WORK
echo "work dir: $WORK" >&2

. bench/own_broker.sh

python3 - <<'PY'
import json, os, re, signal, statistics, subprocess, time, urllib.request

BIN, EXACTLY, BROKER, WORK = (os.environ[k] for k in ("TRIBUTARY_BIN", "EXACTLY", "BROKER", "WORK"))
TOTAL, KILLS, RATE = int(os.environ["TOTAL"]), int(os.environ["KILLS"]), int(os.environ["RATE"])
SESSION = os.environ["SESSION"]
TICKS = os.sysconf("SC_CLK_TCK")

def config(name, total=None, rate=None):
    limits = (f"total = {total}\n" if total else "") + (f"rate = {rate}\n" if rate else "")
    path = f"{WORK}/{name}.toml"
    with open(path, "w") as f:
        f.write(f'''name = "{name}"
[source]
type = "generator"
seed = 3
[source.streams.users]
record_type = "user"
{limits}[runtime]
flush_records = 5000
max_retries = 30
backoff_max = "1s"
[sink]
type = "kafka"
brokers = "{BROKER}"
exactly_once = true
''')
    return path

class Worker:
    def __init__(self, cluster, n):
        self.log = open(f"{WORK}/{cluster}-w{n}.log", "w+")
        self.p = subprocess.Popen(
            [BIN, "worker", "--cluster", cluster, "--bootstrap", BROKER,
             "--admin-addr", "127.0.0.1:0", "--session-timeout", SESSION, "--log-level", "info"],
            stdout=subprocess.DEVNULL, stderr=self.log)
        self.url = None
        for _ in range(600):
            self.log.seek(0)
            m = re.search(r"admin server listening on (http://\S+)", self.log.read())
            if m:
                self.url = m.group(1)
                break
            time.sleep(0.1)
        assert self.url, f"worker {n} did not start"
        self.id = self.url.removeprefix("http://")

    def cpu(self):
        with open(f"/proc/{self.p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return json.load(r)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(timeout=120)

def deploy(cluster, paths):
    subprocess.run([BIN, "deploy", *paths, "--cluster", cluster, "--bootstrap", BROKER],
                   check=True, stdout=subprocess.DEVNULL)

def throughput(workers_n):
    cluster = f"tp{workers_n}-{os.getpid()}"
    workers = [Worker(cluster, i) for i in range(workers_n)]
    names = [f"{cluster}-c{i}" for i in range(6)]
    time.sleep(2)
    cpu0 = sum(w.cpu() for w in workers)
    t0 = time.monotonic()
    deploy(cluster, [config(n, total=TOTAL) for n in names])
    while True:
        c = workers[0].get("/cluster")
        done = [x for x in c["status"]["connectors"]
                if x.get("phase") == "stopped" and sum(s["records_committed"] for s in x["streams"]) >= TOTAL]
        if len(done) == 6:
            break
        time.sleep(0.2)
    took = time.monotonic() - t0
    cpu = sum(w.cpu() for w in workers) - cpu0
    for w in workers:
        w.stop()
    records = 6 * TOTAL
    for n in names:
        subprocess.run([EXACTLY, BROKER, f"{n}.users", str(TOTAL)], check=True, stdout=subprocess.DEVNULL)
    return records / took, cpu * 1e6 / records

one_rate, one_cpu = throughput(1)
three_rate, three_cpu = throughput(3)
print(f"throughput 6 connectors x {TOTAL}: 1 worker {one_rate:,.0f} rec/s, {one_cpu:.1f} CPU-us/rec; "
      f"3 workers {three_rate:,.0f} rec/s, {three_cpu:.1f} CPU-us/rec; ratio 3/1 = {three_rate / one_rate:.2f}")

cluster = f"kill-{os.getpid()}"
workers = [Worker(cluster, i) for i in range(3)]
names = [f"{cluster}-c{i}" for i in range(6)]
deploy(cluster, [config(n, rate=RATE) for n in names])

def owners():
    c = workers[-1].get("/cluster")
    views = {v["name"]: v for v in c["status"]["connectors"]}
    return {x["name"]: (x["state"], x["worker_id"], views.get(x["name"])) for x in c["connectors"]}

def last_commit(view):
    times = [s["last_commit_at"] for s in (view or {}).get("streams", []) if s.get("last_commit_at")]
    return max(times) if times else None

while not all(s == "RUNNING" and last_commit(v) for s, _, v in owners().values()):
    time.sleep(0.2)
took = []
for k in range(KILLS):
    now = owners()
    counts = {w.id: sum(1 for _, o, _ in now.values() if o == w.id) for w in workers}
    victim = max(workers, key=lambda w: counts[w.id])
    moved = [n for n, (_, o, _) in now.items() if o == victim.id]
    workers.remove(victim)
    t_kill = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t_kill))
    victim.p.kill()
    victim.p.wait()
    t0 = time.monotonic()
    while True:
        now = owners()
        ok = all(now[n][0] == "RUNNING" and now[n][1] != victim.id and (last_commit(now[n][2]) or "") > stamp
                 for n in moved)
        if ok:
            break
        if time.monotonic() - t0 > 120:
            raise SystemExit(f"kill {k}: {moved} did not commit again within 120 s: {now}")
        time.sleep(0.1)
    took.append(time.monotonic() - t0)
    print(f"kill {k + 1}: {len(moved)} connector(s) committed again elsewhere after {took[-1]:.1f} s", flush=True)
    workers.append(Worker(cluster, 10 + k))
    while len(workers[-1].get("/workers")) != 3:
        time.sleep(0.2)
    time.sleep(3)
print(f"kill -9 -> commit elsewhere, session timeout {SESSION}, {KILLS} kills: median {statistics.median(took):.1f} s, "
      f"min {min(took):.1f} s, max {max(took):.1f} s")
for w in workers:
    w.stop()
PY
