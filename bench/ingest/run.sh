#!/usr/bin/env bash
# Ingest benchmark: parleyd end to end next to its two ceilings, all in one
# run on the same machine. See bench/README.md for how to read the figures.
#
#   bench/ingest/run.sh            the five figures (about 2 minutes)
#   bench/ingest/run.sh --sweep    then the end-to-end runs again for several
#                                  batcher settings (BENCH_SWEEP)
#
# Environment (defaults in brackets):
#   BENCH_SECONDS [10]            each unlimited measurement
#   BENCH_WARMUP_SECONDS [3]      each warm-up
#   BENCH_CONNECTIONS [64]        loadgen keep-alive connections
#   BENCH_STEADY_RATE [2000]      events/s of the steady run
#   BENCH_STEADY_SECONDS [20]     length of the steady run
#   BENCH_DB_CONNECTIONS [4]      dbdrive connections
#   BENCH_DB_BATCH                dbdrive items per batch [100; 1 for a daemon
#                                 that commits each request alone]
#   BENCH_DB_DEPTH [2]            dbdrive batches in flight per connection
#   BENCH_DB_OPTS ['{}']          second argument of parley_ingest_batch
#   BENCH_CUSTOMERS [200000]      distinct customers of the mix
#   BENCH_BATCH_MAX_EVENTS, BENCH_BATCH_MAX_DELAY_MS, BENCH_MAX_INFLIGHT_BATCHES
#                                 parleyd's "ingest" settings [the daemon's defaults]
#   BENCH_POOL_SIZE               parleyd's database.pool_size [the daemon's default]
#   BENCH_SWEEP ['32:1:2 64:2:2 128:2:2 128:5:4 500:2:2 500:10:4']
#                                 --sweep settings, batch_max_events:batch_max_delay_ms:max_inflight_batches
#   BENCH_PG_PORT [55444]         first port tried for the throwaway PostgreSQL
#   BENCH_PG_SETTINGS ['shared_buffers=512MB max_wal_size=4GB']
#                                 server settings; durability stays on
#   BENCH_BUILD_DIR               an existing build tree to use as it is
#                                 [build/, built here with -O2]
#   BENCH_OUT_DIR                 keep every raw output there
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

sweep=no
for arg in "$@"; do
	case "$arg" in
		--sweep) sweep=yes ;;
		-h | --help) sed -n '2,33s/^# \{0,1\}//p' "$0"; exit 0 ;;
		*) echo "parley: usage: bench/ingest/run.sh [--sweep]" >&2; exit 2 ;;
	esac
done

seconds=${BENCH_SECONDS:-10}
warmup=${BENCH_WARMUP_SECONDS:-3}
conns=${BENCH_CONNECTIONS:-64}
steady_rate=${BENCH_STEADY_RATE:-2000}
steady_seconds=${BENCH_STEADY_SECONDS:-20}
db_conns=${BENCH_DB_CONNECTIONS:-4}
db_depth=${BENCH_DB_DEPTH:-2}
db_opts=${BENCH_DB_OPTS:-'{}'}
customers=${BENCH_CUSTOMERS:-200000}
sweep_list=${BENCH_SWEEP:-'32:1:2 64:2:2 128:2:2 128:5:4 500:2:2 500:10:4'}
first_pg_port=${BENCH_PG_PORT:-55444}
pg_settings=${BENCH_PG_SETTINGS:-'shared_buffers=512MB max_wal_size=4GB'}
python=python3
[[ -x /usr/bin/python3 ]] && python=/usr/bin/python3

work=
cluster=
pids=()
parleyd_pid=
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
		if [[ -n ${BENCH_OUT_DIR:-} ]]; then
			mkdir -p "$BENCH_OUT_DIR"
			cp -- "$work"/*.json "$work"/facts.txt "$work"/*.log "$BENCH_OUT_DIR"/ 2>/dev/null || true
			rm -f -- "$BENCH_OUT_DIR"/parley-*.json   # daemon configs: they name the secret file
		fi
		rm -rf -- "$work"
		work=
	fi
}
trap cleanup EXIT
trap 'echo "parley: interrupted" >&2; exit 130' INT TERM

die() {
	echo "parley: $*" >&2
	exit 1
}

is_uint() {
	[[ $1 =~ ^[0-9]+$ ]]
}

for v in seconds warmup conns steady_rate steady_seconds db_conns db_depth customers; do
	is_uint "${!v}" || die "$v must be a whole number (got '${!v}')"
done
for v in BENCH_DB_BATCH BENCH_BATCH_MAX_EVENTS BENCH_BATCH_MAX_DELAY_MS BENCH_MAX_INFLIGHT_BATCHES BENCH_POOL_SIZE; do
	[[ -z ${!v:-} ]] || is_uint "${!v}" || die "$v must be a whole number (got '${!v}')"
done

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

# ------------------------------------------------------------------- build
if [[ -n ${BENCH_BUILD_DIR:-} ]]; then
	build=$(cd "$BENCH_BUILD_DIR" && pwd)
else
	"$root/scripts/deps.sh"
	# A plain optimised build: CFLAGS=-O2 only matters when build/ is
	# configured for the first time (see bench/http/run.sh).
	CFLAGS=-O2 "$root/scripts/build.sh" build >/dev/null
	build=$root/build
fi
for f in parleyd plugin-dir/webhook.so bench/ingest/loadgen bench/ingest/dbdrive bench/http/bare_responder; do
	[[ -e $build/$f ]] || die "$build/$f is missing; build the tree first"
done
if grep -q '^SANITIZER_FLAGS = -fsanitize' "$build/Makefile" 2>/dev/null; then
	die "$build has sanitizers enabled; figures would be meaningless"
fi
build_cflags=$(sed -n 's/^CFLAGS = //p' "$build/Makefile" 2>/dev/null || true)
bindir=$("$root/scripts/pg.sh" bindir)

work=$(mktemp -d "${TMPDIR:-/tmp}/parley-ingest.XXXXXX") # mode 0700
openssl rand -hex 24 >"$work/secret"
facts=$work/facts.txt
: >"$facts"
fact() { # fact KEY VALUE...
	echo "$1=${*:2}" >>"$facts"
}

# -------------------------------------------------------------- PostgreSQL
# Normal durability (fsync and synchronous_commit on): an answer waits for
# a real commit, in the daemon and in dbdrive alike.
cluster=$(mktemp -d "${TMPDIR:-/tmp}/parley-ingest-pg.XXXXXX")
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
if [[ -n $pg_settings ]]; then
	for kv in $pg_settings; do
		[[ $kv =~ ^[a-z_]+=[A-Za-z0-9._]+$ ]] || die "BENCH_PG_SETTINGS: bad setting '$kv'"
		psql_admin -c "ALTER SYSTEM SET ${kv%%=*} = '${kv#*=}'"
	done
	"$root/scripts/pg.sh" stop "$cluster" >/dev/null
	pg_start
fi
pg_pid=$(head -n 1 "$cluster/data/postmaster.pid")
fact postgres "$("$bindir/postgres" --version); fsync $(psql_admin -c 'SHOW fsync'), synchronous_commit $(psql_admin -c 'SHOW synchronous_commit'), shared_buffers $(psql_admin -c 'SHOW shared_buffers'), max_wal_size $(psql_admin -c 'SHOW max_wal_size')"
fact build "$build (CFLAGS $build_cflags)"

db_dsn() { # db_dsn NAME
	"$root/scripts/pg.sh" url "$cluster" "$pg_port" "$1"
}

# ------------------------------------------------------------- the daemon
http_port=$(free_port)

# write_config FILE DBNAME [N T K]: a parleyd config with one webhook channel
# "bench"; N/T/K are the batcher settings ("" = the daemon's default).
write_config() {
	local file=$1 db=$2 n=${3:-} t=${4:-} k=${5:-}
	"$python" - "$file" "$(db_dsn "$db")" "$http_port" "$build/plugin-dir" "$work/secret" \
		"$n" "$t" "$k" "${BENCH_POOL_SIZE:-}" <<'EOF'
import json, sys
file, dsn, port, plugin_dir, secret, n, t, k, pool = sys.argv[1:]
cfg = {
    "listen": "127.0.0.1:%s" % port,
    "public_url": "http://127.0.0.1:%s" % port,
    "database": {"dsn": dsn},
    "plugin_dir": plugin_dir,
    "log": {"level": "warn", "format": "text"},
    "channels": [{"name": "bench", "plugin": "webhook", "config": {"secret": "$file:" + secret}}],
}
if pool:
    cfg["database"]["pool_size"] = int(pool)
ingest = {key: int(v) for key, v in (("batch_max_events", n), ("batch_max_delay_ms", t),
                                     ("max_inflight_batches", k)) if v != ""}
if ingest:
    cfg["ingest"] = ingest
with open(file, "w") as f:
    json.dump(cfg, f, indent=2)
EOF
}

# Does this parleyd know the "ingest" settings (the batcher)?
psql_admin -c 'CREATE DATABASE parley_probe'
write_config "$work/parley-probe.json" parley_probe 100 2 2
if "$build/parleyd" -c "$work/parley-probe.json" --check-config >"$work/check.log" 2>&1; then
	batcher=yes
else
	grep -q 'ingest: unknown key' "$work/check.log" || { cat "$work/check.log" >&2; die "parleyd --check-config failed"; }
	batcher=no
	for v in BENCH_BATCH_MAX_EVENTS BENCH_BATCH_MAX_DELAY_MS BENCH_MAX_INFLIGHT_BATCHES; do
		[[ -z ${!v:-} ]] || die "$v is set but this parleyd has no \"ingest\" settings"
	done
	[[ $sweep == no ]] || die "--sweep needs a parleyd with \"ingest\" settings"
fi
psql_admin -c 'DROP DATABASE parley_probe'
fact batcher "$batcher"
if [[ $batcher == yes ]]; then
	fact ingest_settings "batch_max_events=${BENCH_BATCH_MAX_EVENTS:-default} batch_max_delay_ms=${BENCH_BATCH_MAX_DELAY_MS:-default} max_inflight_batches=${BENCH_MAX_INFLIGHT_BATCHES:-default}"
else
	fact ingest_settings "none: this parleyd commits each request in its own transaction"
fi
fact pool_size "${BENCH_POOL_SIZE:-default}"

# new_db NAME: an empty database with parleyd's schema.
new_db() {
	psql_admin -c "CREATE DATABASE $1"
	write_config "$work/parley-migrate.json" "$1"
	"$build/parleyd" -c "$work/parley-migrate.json" --migrate >>"$work/migrate.log" 2>&1 ||
		{ tail -n 20 "$work/migrate.log" >&2; die "parleyd --migrate failed"; }
}

# start_parleyd DBNAME [N T K]
start_parleyd() {
	write_config "$work/parley-$1.json" "$@"
	"$build/parleyd" -c "$work/parley-$1.json" 2>"$work/parleyd-$1.log" &
	parleyd_pid=$!
	pids+=("$parleyd_pid")
	wait_http "http://127.0.0.1:$http_port/healthz" ||
		{ tail -n 20 "$work/parleyd-$1.log" >&2; die "parleyd did not become ready"; }
}

stop_parleyd() {
	kill -TERM "$parleyd_pid" 2>/dev/null || true
	wait "$parleyd_pid" 2>/dev/null || true
	local keep=() pid
	for pid in "${pids[@]}"; do
		[[ $pid == "$parleyd_pid" ]] || keep+=("$pid")
	done
	pids=("${keep[@]}")
	parleyd_pid=
}

# count_rows DBNAME: "inbound_event messages" (messages -1 without the table).
count_rows() {
	local dsn ev msg=-1
	dsn=$(db_dsn "$1")
	ev=$("$bindir/psql" -X -t -A -v ON_ERROR_STOP=1 "$dsn" -c 'SELECT count(*) FROM inbound_event')
	if [[ $("$bindir/psql" -X -t -A "$dsn" -c "SELECT to_regclass('message') IS NOT NULL") == t ]]; then
		msg=$("$bindir/psql" -X -t -A -v ON_ERROR_STOP=1 "$dsn" -c 'SELECT count(*) FROM message')
	fi
	echo "$ev $msg"
}

cpu_of() { # cpu_of PID: CPU seconds of the process and its children
	"$python" "$root/bench/ingest/report.py" cpu "$1"
}

loadgen() { # loadgen OUT PREFIX [args...]
	local out=$1 prefix=$2
	shift 2
	"$build/bench/ingest/loadgen" --secret-file "$work/secret" --connections "$conns" \
		--customers "$customers" --prefix "$prefix" "$@" >"$out"
}

# Message ids differ between runs (the prefix); the events do not. Each
# measurement has its own seed, and the warm-up before it another, so the
# measured events are not a repetition of the warm-up's; dbdrive and the end
# to end run get the same ones.
stamp=$(date +%s)

# --------------------------------------------- 1) HTTP ceiling: bare responder
echo "parley: 1/5 HTTP ceiling: loadgen against bench/http/bare_responder (${warmup}s + ${seconds}s)"
bare_port=$(free_port)
"$build/bench/http/bare_responder" "$bare_port" 2>"$work/bare.log" &
bare_pid=$!
pids+=("$bare_pid")
wait_http "http://127.0.0.1:$bare_port/" || die "bare_responder did not start"
loadgen "$work/http.json" "http-$stamp" --seed 2 --url "http://127.0.0.1:$bare_port/webhooks/bench" \
	--warmup "$warmup" --duration "$seconds"
kill -TERM "$bare_pid"
wait "$bare_pid" 2>/dev/null || true
pids=()

# ---------------------------------------------------- 2) DB ceiling: dbdrive
new_db parley_dbdrive
dbdrive_dsn=$(db_dsn parley_dbdrive)
has_fn=$("$bindir/psql" -X -t -A "$dbdrive_dsn" -c "SELECT to_regprocedure('parley_ingest_batch(jsonb,jsonb)') IS NOT NULL")
if [[ $batcher == yes && $has_fn != t ]]; then
	die "this parleyd batches but its schema has no parley_ingest_batch(jsonb, jsonb)"
fi
if [[ $batcher == yes ]]; then
	db_batch=${BENCH_DB_BATCH:-100}
	db_sql=function
else
	# The daemon commits each request alone: the same work is one insert per
	# transaction.
	db_batch=${BENCH_DB_BATCH:-1}
	db_sql=insert
fi
echo "parley: 2/5 DB ceiling: dbdrive, $db_conns connections x depth $db_depth, batches of $db_batch (${warmup}s + ${seconds}s)"
dbdrive() { # dbdrive OUT PREFIX SEED SECONDS
	local rc=0
	"$build/bench/ingest/dbdrive" --dsn "$dbdrive_dsn" --sql "$db_sql" --connections "$db_conns" \
		--depth "$db_depth" --batch "$db_batch" --opts "$db_opts" --customers "$customers" \
		--prefix "$2" --seed "$3" --warmup 0 --duration "$4" >"$1" || rc=$?
	# 3: some batches failed; the report says how many.
	((rc == 0 || rc == 3)) || die "dbdrive failed"
}
dbdrive "$work/db-warmup.json" "dbw-$stamp" 1 "$warmup"
read -r ev0 msg0 < <(count_rows parley_dbdrive)
cpu0=$(cpu_of "$pg_pid")
dbdrive "$work/db.json" "db-$stamp" 2 "$seconds"
cpu1=$(cpu_of "$pg_pid")
read -r ev1 msg1 < <(count_rows parley_dbdrive)
fact db_events "$((ev1 - ev0))"
fact db_messages "$(((msg0 < 0) ? -1 : msg1 - msg0))"
fact db_cpu_pg "$("$python" -c "print($cpu1 - $cpu0)")"

# ------------------------------------------------- 3) + 4) parleyd end to end
# run_e2e TAG DBNAME: unlimited, then steady; facts prefixed with TAG.
run_e2e() {
	local tag=$1 db=$2 ev0 msg0 ev1 msg1 p0 p1 g0 g1
	loadgen "$work/$tag-warmup.json" "$tag-w-$stamp" --seed 1 --url "http://127.0.0.1:$http_port/webhooks/bench" \
		--warmup 0 --duration "$warmup"
	read -r ev0 msg0 < <(count_rows "$db")
	p0=$(cpu_of "$parleyd_pid")
	g0=$(cpu_of "$pg_pid")
	loadgen "$work/$tag.json" "$tag-$stamp" --seed 2 --url "http://127.0.0.1:$http_port/webhooks/bench" \
		--warmup 0 --duration "$seconds"
	p1=$(cpu_of "$parleyd_pid")
	g1=$(cpu_of "$pg_pid")
	read -r ev1 msg1 < <(count_rows "$db")
	fact "${tag}_events" "$((ev1 - ev0))"
	fact "${tag}_messages" "$(((msg0 < 0) ? -1 : msg1 - msg0))"
	fact "${tag}_cpu_parleyd" "$("$python" -c "print($p1 - $p0)")"
	fact "${tag}_cpu_pg" "$("$python" -c "print($g1 - $g0)")"
	fact "${tag}_rss_kb" "$("$python" "$root/bench/ingest/report.py" hwm "$parleyd_pid")"

	read -r ev0 msg0 < <(count_rows "$db")
	p0=$(cpu_of "$parleyd_pid")
	g0=$(cpu_of "$pg_pid")
	# The steady run's warm-up is part of the same open-loop schedule.
	loadgen "$work/$tag-steady.json" "$tag-s-$stamp" --seed 3 --url "http://127.0.0.1:$http_port/webhooks/bench" \
		--rate "$steady_rate" --warmup 2 --duration "$steady_seconds"
	p1=$(cpu_of "$parleyd_pid")
	g1=$(cpu_of "$pg_pid")
	read -r ev1 msg1 < <(count_rows "$db")
	fact "${tag}_steady_events" "$((ev1 - ev0))"
	fact "${tag}_steady_cpu_parleyd" "$("$python" -c "print($p1 - $p0)")"
	fact "${tag}_steady_cpu_pg" "$("$python" -c "print($g1 - $g0)")"
	fact "${tag}_steady_rss_kb" "$("$python" "$root/bench/ingest/report.py" hwm "$parleyd_pid")"
	kill -0 "$parleyd_pid" 2>/dev/null || die "parleyd died during the run (log: see above)"
}

new_db parley_e2e
start_parleyd parley_e2e "${BENCH_BATCH_MAX_EVENTS:-}" "${BENCH_BATCH_MAX_DELAY_MS:-}" "${BENCH_MAX_INFLIGHT_BATCHES:-}"
echo "parley: 3/5 parleyd end to end, unlimited, $conns connections (${warmup}s + ${seconds}s)"
echo "parley: 4/5 parleyd at a steady $steady_rate events/s (2s + ${steady_seconds}s)"
run_e2e e2e parley_e2e
stop_parleyd
if [[ -s $work/parleyd-parley_e2e.log ]]; then
	fact e2e_log_lines "$(wc -l <"$work/parleyd-parley_e2e.log")"
	cp "$work/parleyd-parley_e2e.log" "$work/parleyd-e2e.log"
fi

echo "parley: 5/5 report"
"$python" "$root/bench/ingest/report.py" summary "$work"

if [[ -s $work/parleyd-e2e.log ]]; then
	echo
	echo "parleyd warnings (last 5 of $(wc -l <"$work/parleyd-e2e.log")):"
	tail -n 5 "$work/parleyd-e2e.log"
fi

# ------------------------------------------------------------------ sweep
if [[ $sweep == yes ]]; then
	i=0
	for setting in $sweep_list; do
		IFS=: read -r n t k <<<"$setting"
		if ! is_uint "$n" || ! is_uint "$t" || ! is_uint "${k:-2}"; then
			die "BENCH_SWEEP: bad setting '$setting'"
		fi
		i=$((i + 1))
		echo "parley: sweep $i: batch_max_events=$n batch_max_delay_ms=$t max_inflight_batches=${k:-2}"
		new_db "parley_sweep_$i"
		start_parleyd "parley_sweep_$i" "$n" "$t" "${k:-2}"
		run_e2e "sweep$i" "parley_sweep_$i"
		stop_parleyd
		fact "sweep${i}_setting" "$n:$t:${k:-2}"
		psql_admin -c "DROP DATABASE parley_sweep_$i"
	done
	"$python" "$root/bench/ingest/report.py" sweep "$work"
fi
