#!/usr/bin/env bash
# HTTP throughput of parleyd, as fractions of two ceilings measured in the
# same run: a bare libevent HTTP responder and bare PostgreSQL one-row INSERTs.
# See bench/README.md for how to read the figures.
#
# Environment: BENCH_SECONDS (per measurement, default 10), BENCH_WARMUP_SECONDS
# (default 3), BENCH_THREADS (wrk -t / pgbench -j, default 2), BENCH_CONNECTIONS
# (wrk -c / pgbench -c, default 32), BENCH_BODIES (pre-signed webhook bodies,
# default 300000), BENCH_PG_PORT (first port to try, default 55434).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

seconds=${BENCH_SECONDS:-10}
warmup=${BENCH_WARMUP_SECONDS:-3}
threads=${BENCH_THREADS:-2}
conns=${BENCH_CONNECTIONS:-32}
bodies=${BENCH_BODIES:-300000}
first_pg_port=${BENCH_PG_PORT:-55434}
python=python3
[[ -x /usr/bin/python3 ]] && python=/usr/bin/python3

work=
cluster=
pids=()
cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	pids=()
	if [[ -n $cluster ]]; then
		"$root/scripts/pg.sh" destroy "$cluster" >/dev/null 2>&1 ||
			echo "parley: could not remove the bench cluster in $cluster" >&2
		cluster=
	fi
	if [[ -n $work ]]; then
		rm -rf -- "$work"
		work=
	fi
}
trap cleanup EXIT
trap 'echo "parley: interrupted" >&2; exit 130' INT TERM

free_port() {
	"$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL: up to 20 s for a 200.
wait_http() {
	local i
	for ((i = 0; i < 200; i++)); do
		curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

"$root/scripts/deps.sh" --bench
# A plain optimised build: the default CFLAGS of a fresh configure are
# "-g -O2"; CFLAGS=-O2 only matters the first time build/ is configured.
CFLAGS=-O2 "$root/scripts/build.sh" build >/dev/null
if grep -q '^SANITIZER_FLAGS = -fsanitize' build/Makefile; then
	echo "parley: build/ has sanitizers enabled; figures would be meaningless" >&2
	exit 1
fi
build_cflags=$(sed -n 's/^CFLAGS = //p' build/Makefile)
bindir=$("$root/scripts/pg.sh" bindir)

work=$(mktemp -d "${TMPDIR:-/tmp}/parley-bench.XXXXXX") # mode 0700
openssl rand -hex 24 >"$work/secret"

# PostgreSQL with its normal durability settings: webhook answers wait for
# real commits, and so do the pgbench INSERTs they are compared with.
cluster=$(mktemp -d "${TMPDIR:-/tmp}/parley-bench-pg.XXXXXX")
pg_port=
for ((p = first_pg_port; p < first_pg_port + 20; p++)); do
	rc=0
	"$root/scripts/pg.sh" start "$cluster" "$p" >"$work/pg-start.log" 2>&1 || rc=$?
	if ((rc == 0)); then
		pg_port=$p
		break
	fi
	((rc == 3)) || break
done
[[ -n $pg_port ]] || { cat "$work/pg-start.log" >&2; echo "parley: PostgreSQL did not start" >&2; exit 1; }
"$bindir/psql" -q -X -v ON_ERROR_STOP=1 "$("$root/scripts/pg.sh" url "$cluster" "$pg_port")" \
	-c 'CREATE DATABASE parley_bench'
dsn=$("$root/scripts/pg.sh" url "$cluster" "$pg_port" parley_bench)
psql_bench() {
	"$bindir/psql" -q -X -t -A -v ON_ERROR_STOP=1 "$dsn" "$@"
}

# parleyd with one webhook channel.
http_port=$(free_port)
cat >"$work/parley.json" <<EOF
{
  "listen": "127.0.0.1:$http_port",
  "public_url": "http://127.0.0.1:$http_port",
  "database": { "dsn": "$dsn" },
  "plugin_dir": "$root/build/plugin-dir",
  "log": { "level": "warn", "format": "text" },
  "channels": [
    { "name": "bench", "plugin": "webhook", "config": { "secret": "\$file:$work/secret" } }
  ]
}
EOF
build/parleyd -c "$work/parley.json" 2>"$work/parleyd.log" &
pids+=($!)
parleyd_pid=$!
wait_http "http://127.0.0.1:$http_port/healthz" ||
	{ tail -n 20 "$work/parleyd.log" >&2; echo "parley: parleyd did not become ready" >&2; exit 1; }

bare_port=$(free_port)
build/bench/http/bare_responder "$bare_port" 2>"$work/bare.log" &
pids+=($!)
wait_http "http://127.0.0.1:$bare_port/" || { echo "parley: bare_responder did not start" >&2; exit 1; }

# The same table as inbound_event (columns, defaults, unique dedupe key and
# indexes), so the INSERT ceiling does the work a webhook's commit does.
psql_bench -c 'CREATE TABLE bench_insert (LIKE inbound_event INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)'
cat >"$work/insert.sql" <<'EOF'
INSERT INTO bench_insert (channel_instance, dedupe_key, event_type, external_id, author_external_id, event, raw)
VALUES ('bench', gen_random_uuid()::text, 'message_created', 'pg-bench', 'visitor-1',
        '{"type":"message_created","external_id":"pg-bench","author":{"external_id":"visitor-1","name":"Bench Visitor"},"text":"Benchmark message: my order has not arrived yet","visibility":"private"}',
        '{"id":"pg-bench","author":{"id":"visitor-1","name":"Bench Visitor"},"text":"Benchmark message: my order has not arrived yet","visibility":"private"}');
EOF

echo "parley: signing $bodies webhook bodies"
mkdir -p "$work/warm" "$work/bodies"
stamp=$(date +%s)
"$python" bench/http/gen_bodies.py --secret-file "$work/secret" --count 20000 \
	--threads "$threads" --prefix "warm-$stamp" --out-dir "$work/warm"
"$python" bench/http/gen_bodies.py --secret-file "$work/secret" --count "$bodies" \
	--threads "$threads" --prefix "bench-$stamp" --out-dir "$work/bodies"

wrk_run() { # wrk_run SECONDS URL [BODIES_DIR]: with BODIES_DIR, signed webhook POSTs
	local secs=$1 url=$2
	if (($# > 2)); then
		wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -s bench/http/webhook.lua \
			"$url" -- "$3" /webhooks/bench
	else
		wrk -t"$threads" -c"$conns" -d"${secs}s" --latency "$url"
	fi
}
pgbench_run() { # pgbench_run SECONDS [args...]
	local secs=$1
	shift
	"$bindir/pgbench" -n -c "$conns" -j "$threads" -T "$secs" -f "$work/insert.sql" \
		-h 127.0.0.1 -p "$pg_port" -U postgres "$@" parley_bench
}
bare_url=http://127.0.0.1:$bare_port/
healthz_url=http://127.0.0.1:$http_port/healthz
webhook_url=http://127.0.0.1:$http_port/webhooks/bench

echo "parley: warming up (${warmup}s each)"
wrk_run "$warmup" "$bare_url" >/dev/null
wrk_run "$warmup" "$healthz_url" >/dev/null
wrk_run "$warmup" "$webhook_url" "$work/warm" >/dev/null
pgbench_run "$warmup" >/dev/null 2>&1
psql_bench -c 'TRUNCATE bench_insert'
rows_before=$(psql_bench -c "SELECT count(*) FROM inbound_event WHERE channel_instance = 'bench'")

echo "parley: measuring (${seconds}s each, $threads threads, $conns connections)"
wrk_run "$seconds" "$bare_url" >"$work/bare.txt"
wrk_run "$seconds" "$healthz_url" >"$work/healthz.txt"
wrk_run "$seconds" "$webhook_url" "$work/bodies" >"$work/webhook.txt"
rows_after=$(psql_bench -c "SELECT count(*) FROM inbound_event WHERE channel_instance = 'bench'")
(cd "$work" && pgbench_run "$seconds" -l --log-prefix=pgbench_log >"$work/pgbench.txt" 2>&1)

{
	echo "rows=$((rows_after - rows_before))"
	echo "replays=$(sed -n 's/^replayed-ids: //p' "$work/webhook.txt")"
	echo "config=wrk -t$threads -c$conns -d${seconds}s; pgbench -c $conns -j $threads -T $seconds"
	echo "build_cflags=$build_cflags"
	echo "postgres=$("$bindir/postgres" --version), default durability (fsync on, synchronous_commit on)"
} >"$work/facts.txt"
"$python" bench/http/report.py "$work"

if ! kill -0 "$parleyd_pid" 2>/dev/null; then
	echo "parley: parleyd died during the run; log tail:" >&2
	tail -n 20 "$work/parleyd.log" >&2
	exit 1
fi
if [[ -s $work/parleyd.log ]]; then
	echo "parleyd warnings (last 5):"
	tail -n 5 "$work/parleyd.log"
fi
