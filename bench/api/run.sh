#!/usr/bin/env bash
# API benchmark: the agents' list and timeline through the real parleyd on
# the 10M-message data set of bench/query, with 50 concurrent agents while
# signed webhooks arrive at a steady rate; then the live-event fan-out. See
# bench/README.md.
#
#   bench/api/run.sh
#
# Environment (defaults in brackets):
#   BENCH_API_SECONDS [15]       each measurement
#   BENCH_API_AGENTS [50]        concurrent API connections (half list, half timeline)
#   BENCH_API_INGEST_RATE [1000] signed webhook events per second meanwhile (0: none)
#   (live events: bench/api/fanout.sh)
#   BENCH_QUERY_CLUSTER          keep the data's cluster there and reuse it [temporary]
#   BENCH_QUERY_*, BENCH_PG_*    the data set and server (bench/query/run.sh)
#   BENCH_BUILD_DIR              an existing -O2 build tree [build/, built]
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

case "${1:-}" in
	"") ;;
	-h | --help) sed -n '2,17s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "parley: usage: bench/api/run.sh" >&2; exit 2 ;;
esac

seconds=${BENCH_API_SECONDS:-15}
agents=${BENCH_API_AGENTS:-50}
rate=${BENCH_API_INGEST_RATE:-1000}
sse_clients=${BENCH_API_SSE_CLIENTS:-500}
python=python3
[[ -x /usr/bin/python3 ]] && python=/usr/bin/python3

die() {
	echo "parley: $*" >&2
	exit 1
}
for v in seconds agents; do
	[[ ${!v} =~ ^[0-9]+$ ]] && ((${!v} > 1)) || die "$v must be a whole number above 1 (got '${!v}')"
done
[[ $rate =~ ^[0-9]+$ && $sse_clients =~ ^[0-9]+$ ]] || die "rates and counts are whole numbers"

work=$(mktemp -d "${TMPDIR:-/tmp}/parley-api.XXXXXX")
cluster=${BENCH_QUERY_CLUSTER:-$work/cluster}
pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	"$root/scripts/pg.sh" stop "$cluster" >/dev/null 2>&1 || true
	[[ -z ${BENCH_QUERY_CLUSTER:-} ]] && "$root/scripts/pg.sh" destroy "$cluster" >/dev/null 2>&1
	rm -rf -- "$work"
}
trap cleanup EXIT
trap 'echo "parley: interrupted" >&2; exit 130' INT TERM

# ------------------------------------------------------------------- build
"$root/scripts/deps.sh" --bench
if [[ -n ${BENCH_BUILD_DIR:-} ]]; then
	build=$(cd "$BENCH_BUILD_DIR" && pwd)
else
	CFLAGS=-O2 "$root/scripts/build.sh" build >/dev/null
	build=$root/build
fi
for f in parleyd plugin-dir/webhook.so bench/ingest/loadgen; do
	[[ -e $build/$f ]] || die "$build/$f is missing; build the tree first"
done

# --------------------------------------------- data, and the SQL ceilings
# bench/query makes (or reuses) the data and measures the bare SQL of the
# queue and a timeline: the ceilings the API's figures are set against.
echo "parley: the data set and the SQL ceilings (bench/query)"
BENCH_QUERY_CLUSTER=$cluster BENCH_BUILD_DIR=$build "$root/bench/query/run.sh" | tee "$work/query.txt" |
	sed -n '/^parley: \(generating\|reusing\|data generated\)/p; /^results/,$p'

bindir=$("$root/scripts/pg.sh" bindir)
pg_port=
for ((p = ${BENCH_PG_PORT:-55454}; p < ${BENCH_PG_PORT:-55454} + 20; p++)); do
	if "$root/scripts/pg.sh" start "$cluster" "$p" >"$work/pg-start.log" 2>&1; then
		pg_port=$p
		break
	fi
done
[[ -n $pg_port ]] || { cat "$work/pg-start.log" >&2; die "PostgreSQL did not start"; }
dsn=$("$root/scripts/pg.sh" url "$cluster" "$pg_port" parley_query)
psql_q() { "$bindir/psql" -X -q -t -A -v ON_ERROR_STOP=1 "$dsn" "$@"; }

# ------------------------------------------------------- parleyd and who asks
http_port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/secret"
cat >"$work/parley.json" <<EOF
{
  "listen": "127.0.0.1:$http_port",
  "public_url": "http://127.0.0.1:$http_port",
  "database": { "dsn": "$dsn", "pool_size": 8 },
  "plugin_dir": "$build/plugin-dir",
  "log": { "level": "warn" },
  "limits": { "max_connections": 4096 },
  "channels": [ { "name": "web", "plugin": "webhook", "config": { "secret": "\$file:$work/secret" } } ]
}
EOF
"$build/parleyd" -c "$work/parley.json" --migrate >"$work/migrate.log" 2>&1 ||
	{ cat "$work/migrate.log" >&2; die "parleyd --migrate failed"; }
# Teams 1 (owns "web") and 2 (owns "fb") and agents 1..40, as bench/query's
# data names them; the benchmark's agent is a supervisor of team 1.
psql_q <<'EOF'
INSERT INTO team (id, name) VALUES (1, 'Web'), (2, 'Facebook') ON CONFLICT DO NOTHING;
INSERT INTO team_channel VALUES (1, 'web'), (2, 'fb') ON CONFLICT DO NOTHING;
INSERT INTO agent (id, email, name, role, availability)
SELECT g, 'agent' || g || '@bench.example', 'Agent ' || g, CASE WHEN g = 1 THEN 'supervisor' ELSE 'agent' END, 'offline'
  FROM generate_series(1, 40) g ON CONFLICT DO NOTHING;
INSERT INTO agent_team SELECT g, 1 + g % 2 FROM generate_series(1, 40) g ON CONFLICT DO NOTHING;
INSERT INTO agent_team VALUES (1, 1) ON CONFLICT DO NOTHING;
SELECT setval('team_id_seq', 100), setval('agent_id_seq', 100) \g /dev/null
EOF
token=$("$build/parleyd" -c "$work/parley.json" --create-token bench --role supervisor \
	--agent agent1@bench.example 2>/dev/null)
# Conversations the agent may open (team 1's instance), drawn at random.
psql_q -c "SELECT id FROM conversation TABLESAMPLE SYSTEM (1) WHERE channel_instance = 'web' LIMIT 5000" \
	>"$work/ids"
[[ -s $work/ids ]] || die "no conversations of instance web in the data"

"$build/parleyd" -c "$work/parley.json" >"$work/parleyd.log" 2>&1 &
pids+=($!)
parleyd_pid=$!
for _ in $(seq 100); do
	curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1 && break
	sleep 0.1
done
curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null || { tail "$work/parleyd.log" >&2; die "parleyd is not ready"; }

list_path="/api/v1/conversations?sort=due&limit=50"
for path in "$list_path" "/api/v1/conversations/$(head -1 "$work/ids")/timeline?limit=50"; do
	code=$(curl -s -o "$work/probe.json" -w '%{http_code}' -H "Authorization: Bearer $token" \
		"http://127.0.0.1:$http_port$path")
	[[ $code == 200 ]] || { head -c 300 "$work/probe.json" >&2; echo >&2; die "GET $path answered $code"; }
done

# ---------------------------------------------------------------- measure
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
ingest_seconds=$((seconds + 8))
if ((rate > 0)); then
	"$build/bench/ingest/loadgen" --url "http://127.0.0.1:$http_port/webhooks/web" \
		--secret-file "$work/secret" --rate "$rate" --connections 16 --warmup 3 \
		--duration $((ingest_seconds - 3)) --prefix "api-$(date +%s)" >"$work/ingest.json" 2>"$work/ingest.err" &
	ingest_pid=$!
	pids+=($ingest_pid)
	sleep 3
fi
half=$((agents / 2))
echo
echo "parley: $agents agents for ${seconds}s ($half on the queue, $((agents - half)) on timelines)," \
	"ingest at $rate events/s"
wrk -t1 -c"$half" -d"${seconds}s" --timeout 10s -s "$root/bench/api/api.lua" \
	"http://127.0.0.1:$http_port" -- list "$token" "$list_path" >"$work/list.txt" 2>&1 &
wl=$!
wrk -t1 -c$((agents - half)) -d"${seconds}s" --timeout 10s -s "$root/bench/api/api.lua" \
	"http://127.0.0.1:$http_port" -- timeline "$token" "$work/ids" >"$work/timeline.txt" 2>&1 &
wt=$!
wait "$wl" || true
wait "$wt" || true
if ((rate > 0)); then
	wait "$ingest_pid" || true
fi
result() { grep '^RESULT' "$1" || { cat "$1" >&2; echo "RESULT failed"; }; }
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
lr=$(result "$work/list.txt")
tr=$(result "$work/timeline.txt")
ingest_line="not run"
if ((rate > 0)) && [[ -s $work/ingest.json ]]; then
	ingest_line=$("$python" -c '
import json, sys
r = json.load(open(sys.argv[1]))
q, lat = r["requests"], r["latency_ms"]
print("%.0f events/s acknowledged (target %.0f), p99 %.1f ms, %d sent, %d not 2xx" % (
    r["achieved_2xx_rps"], r["rate_target"], lat["p99"], q["sent"], q["sent"] - q["ok_2xx"]))' \
		"$work/ingest.json" 2>/dev/null || echo "see the loadgen output: $(head -c 200 "$work/ingest.err")")
fi

sse_line="skipped (BENCH_API_SSE_CLIENTS=0)"
if ((sse_clients > 0)); then
	sse_line="measured by bench/api/fanout.sh (its own cluster and parleyd; run it separately)"
fi

sql_queue=$(sed -n 's/^  a) 50 open conversations by due time: *//p' "$work/query.txt")
sql_timeline=$(sed -n "s/^  b) one customer's full timeline: *//p" "$work/query.txt")
echo
echo "results (target: list and timeline p99 <= 20 ms; fan-out p99 <= 250 ms; <= 16 KiB per SSE client):"
printf '  %-44s p50 %s ms, p99 %s ms, %s req/s, non-2xx %s, errors %s\n' \
	"API: 50 open conversations by due, team 1" "$(field "$lr" p50_ms)" "$(field "$lr" p99_ms)" \
	"$(field "$lr" rps)" "$(field "$lr" non2xx)" "$(field "$lr" errors)"
printf '  %-44s p50 %s ms, p99 %s ms, %s req/s, non-2xx %s, errors %s\n' \
	"API: a conversation's timeline (50 items)" "$(field "$tr" p50_ms)" "$(field "$tr" p99_ms)" \
	"$(field "$tr" rps)" "$(field "$tr" non2xx)" "$(field "$tr" errors)"
echo "  ceiling, SQL only, 1 client (bench/query):"
echo "    queue:    $sql_queue"
echo "    timeline: $sql_timeline"
echo "  ingest meanwhile: $ingest_line"
echo "  live events: $sse_line"
echo "  parleyd RSS at the end: $(rss_kib "$parleyd_pid") KiB"
