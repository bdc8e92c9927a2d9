#!/usr/bin/env bash
# Live event fan-out benchmark: many streams on GET /api/v1/events, events
# committed at a steady rate, the time from each commit to each delivery,
# and parleyd's memory per stream. See bench/README.md.
#
#   bench/api/fanout.sh
#
# Environment (defaults in brackets):
#   BENCH_SSE_CLIENTS [500]      streams connected at once
#   BENCH_SSE_EVENTS [300]       events committed (one transaction each)
#   BENCH_SSE_RATE [20]          events per second
#   BENCH_SSE_PAYLOAD [800]      bytes of padding per event (about a message's JSON)
#   BENCH_SSE_AGENTS [50]        agents (tokens) the streams are spread over
#   BENCH_PG_PORT [55464]        first port tried for the throwaway PostgreSQL
#   BENCH_PG_SETTINGS ['shared_buffers=256MB']
#                                server settings; durability stays on
#   BENCH_BUILD_DIR              an existing build tree to use as it is
#                                [build/, built here with -O2]
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

case "${1:-}" in
	"") ;;
	-h | --help) sed -n '2,18s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "parley: usage: bench/api/fanout.sh" >&2; exit 2 ;;
esac

clients=${BENCH_SSE_CLIENTS:-500}
events=${BENCH_SSE_EVENTS:-300}
rate=${BENCH_SSE_RATE:-20}
payload=${BENCH_SSE_PAYLOAD:-800}
agents=${BENCH_SSE_AGENTS:-50}
first_pg_port=${BENCH_PG_PORT:-55464}
pg_settings=${BENCH_PG_SETTINGS:-'shared_buffers=256MB'}
python=python3
[[ -x /usr/bin/python3 ]] && python=/usr/bin/python3

die() {
	echo "parley: $*" >&2
	exit 1
}
for v in clients events rate payload agents; do
	[[ ${!v} =~ ^[0-9]+$ ]] && ((${!v} > 0)) || die "$v must be a positive whole number (got '${!v}')"
done

work=
cluster=
parleyd_pid=
cleanup() {
	if [[ -n $parleyd_pid ]]; then
		kill -TERM "$parleyd_pid" 2>/dev/null || true
		wait "$parleyd_pid" 2>/dev/null || true
		parleyd_pid=
	fi
	if [[ -n $cluster ]]; then
		"$root/scripts/pg.sh" destroy "$cluster" >/dev/null 2>&1 ||
			echo "parley: could not remove the bench cluster in $cluster" >&2
		cluster=
	fi
	[[ -z $work ]] || rm -rf -- "$work"
}
trap cleanup EXIT
trap 'echo "parley: interrupted" >&2; exit 130' INT TERM

# Each stream is a socket here and one in parleyd.
want_fds=$((clients + 200))
if (($(ulimit -n) < want_fds)); then
	ulimit -n "$want_fds" 2>/dev/null || die "ulimit -n is below $want_fds; raise it"
fi

# ------------------------------------------------------------------- build
if [[ -n ${BENCH_BUILD_DIR:-} ]]; then
	build=$(cd "$BENCH_BUILD_DIR" && pwd)
else
	"$root/scripts/deps.sh"
	CFLAGS=-O2 "$root/scripts/build.sh" build >/dev/null
	build=$root/build
fi
for f in parleyd plugin-dir/webhook.so bench/api/sse_fanout; do
	[[ -e $build/$f ]] || die "$build/$f is missing; build the tree first"
done
if grep -q '^SANITIZER_FLAGS = -fsanitize' "$build/Makefile" 2>/dev/null; then
	die "$build has sanitizers enabled; figures would be meaningless"
fi
build_cflags=$(sed -n 's/^CFLAGS = //p' "$build/Makefile" 2>/dev/null || true)
bindir=$("$root/scripts/pg.sh" bindir)
work=$(mktemp -d "${TMPDIR:-/tmp}/parley-sse.XXXXXX")

# -------------------------------------------------------------- PostgreSQL
cluster=$(mktemp -d "${TMPDIR:-/tmp}/parley-sse-pg.XXXXXX")
pg_start() {
	local p rc
	for ((p = first_pg_port; p < first_pg_port + 20; p++)); do
		rc=0
		"$root/scripts/pg.sh" start "$cluster" "$p" >"$work/pg-start.log" 2>&1 || rc=$?
		if ((rc == 0)); then
			pg_port=$p
			return 0
		fi
		((rc == 3)) || break
	done
	cat "$work/pg-start.log" >&2
	die "PostgreSQL did not start"
}
pg_port=
pg_start
admin_dsn=$("$root/scripts/pg.sh" url "$cluster" "$pg_port")
psql_admin() {
	"$bindir/psql" -q -X -t -A -v ON_ERROR_STOP=1 "$admin_dsn" "$@"
}
for kv in $pg_settings; do
	[[ $kv =~ ^[a-z_]+=[A-Za-z0-9._]+$ ]] || die "BENCH_PG_SETTINGS: bad setting '$kv'"
	psql_admin -c "ALTER SYSTEM SET ${kv%%=*} = '${kv#*=}'"
done
"$root/scripts/pg.sh" stop "$cluster" >/dev/null
pg_start
psql_admin -c "CREATE DATABASE parley_sse"
dsn=$("$root/scripts/pg.sh" url "$cluster" "$pg_port" parley_sse)

# -------------------------------------------------------------- the daemon
http_port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$python" - "$work/parley.json" "$dsn" "$http_port" "$build/plugin-dir" "$clients" <<'EOF'
import json, sys
file, dsn, port, plugin_dir, clients = sys.argv[1:]
cfg = {
    "listen": "127.0.0.1:%s" % port,
    "database": {"dsn": dsn},
    "plugin_dir": plugin_dir,
    "log": {"level": "warn"},
    "jobs": {"enabled": False},
    "limits": {"max_connections": int(clients) + 100},
    "live_events": {"max_clients": int(clients) + 10},
    "channels": [{"name": "site", "plugin": "webhook", "config": {"secret": "bench-not-secret"}}],
}
json.dump(cfg, open(file, "w"))
EOF
"$build/parleyd" -c "$work/parley.json" >"$work/parleyd.log" 2>&1 &
parleyd_pid=$!
for ((i = 0; i < 200; i++)); do
	curl -fsS -o /dev/null "http://127.0.0.1:$http_port/readyz" 2>/dev/null && break
	sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$http_port/readyz" || { cat "$work/parleyd.log" >&2; die "parleyd is not ready"; }

# Agents of one team that owns three instances (so each stream's scope is a
# real lookup), one token each; the secrets are throwaway.
prefix="bench_$(openssl rand -hex 6)_"
"$bindir/psql" -q -X -v ON_ERROR_STOP=1 -v agents="$agents" -v prefix="$prefix" "$dsn" <<'EOF'
WITH t AS (INSERT INTO team (name) VALUES ('Bench') RETURNING id),
     ch AS (INSERT INTO team_channel (team_id, channel_instance)
            SELECT t.id, i FROM t, unnest(ARRAY['site', 'shop', 'mail']) AS i)
INSERT INTO agent (email, name, role)
SELECT 'bench-' || n || '@example.com', 'Bench ' || n, 'agent' FROM generate_series(0, :agents - 1) AS n;
INSERT INTO agent_team (agent_id, team_id) SELECT a.id, (SELECT id FROM team) FROM agent a;
INSERT INTO api_token (name, secret_hash, prefix, role, agent_id, created_by)
SELECT 'bench-' || n, sha256(convert_to(:'prefix' || n, 'UTF8')), 'bench', 'agent',
       (SELECT id FROM agent WHERE email = 'bench-' || n || '@example.com'), 'bench'
  FROM generate_series(0, :agents - 1) AS n;
EOF

echo "parley: $clients streams, $events events at $rate/s ($payload bytes each); parleyd pid $parleyd_pid" >&2
"$build/bench/api/sse_fanout" --url "http://127.0.0.1:$http_port" --token-prefix "$prefix" \
	--tokens "$agents" --dsn "$dsn" --clients "$clients" --events "$events" --rate "$rate" \
	--payload "$payload" --pid "$parleyd_pid" >"$work/result.json"

"$python" - "$work/result.json" "$("$bindir/postgres" --version)" "$build_cflags" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
lat, rss = r["latency_ms"], r["rss_kib"]
print("Live event fan-out (GET /api/v1/events)")
print("  %s; parleyd CFLAGS %s" % (sys.argv[2], sys.argv[3] or "(default)"))
print("  streams: %d connected and ready of %d (in %.2f s), %d closed"
      % (r["ready"], r["clients"], r["connect_s"], r["closed"]))
print("  events: %d committed at %d/s, %d bytes of payload each"
      % (r["produced"], r["rate"], r["payload_bytes"]))
print("  deliveries: %d of %d expected%s"
      % (r["deliveries"], r["expected"], "" if r["deliveries"] == r["expected"] else "  NOT CLEAN"))
print("  commit -> delivery, ms: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f   (target p99 <= 250)"
      % (lat["p50"], lat["p90"], lat["p99"], lat["max"]))
print("  parleyd RSS, KiB: before %d, streams connected %d, after the events %d"
      % (rss["before"], rss["connected"], rss["after_events"]))
print("  per stream: %.1f KiB   (target <= 16)" % r["per_client_kib"])
if r["early"]:
    print("  (%d deliveries overtook their commit's answer; counted from before the statement)" % r["early"])
if r["producer_error"]:
    print("  producer error: " + r["producer_error"])
EOF
