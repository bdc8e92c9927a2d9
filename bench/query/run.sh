#!/usr/bin/env bash
# Query benchmark: the agents' two most frequent reads on a large synthetic
# database (1M customers, 10M messages by default). See bench/README.md.
#
#   bench/query/run.sh
#
# Environment (defaults in brackets):
#   BENCH_QUERY_CUSTOMERS [1000000]       customers (each with an identity)
#   BENCH_QUERY_ACTIVE [800000]           customers with conversations and messages
#   BENCH_QUERY_CONVERSATIONS [2000000]
#   BENCH_QUERY_MESSAGES [10000000]
#   BENCH_QUERY_JOBS [number of CPUs]     parallel sessions loading messages
#   BENCH_QUERY_SECONDS [15]              each measurement
#   BENCH_QUERY_CLIENTS [1]               concurrent pgbench clients
#   BENCH_QUERY_CLUSTER                   keep the cluster in this directory and
#                                         reuse its data when the sizes match
#                                         [a temporary one, removed at the end]
#   BENCH_PG_PORT [55454]                 first port tried for PostgreSQL
#   BENCH_PG_SETTINGS ['shared_buffers=512MB max_wal_size=8GB checkpoint_timeout=30min']
#   BENCH_BUILD_DIR                       an existing build tree [build/]
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

case "${1:-}" in
	"") ;;
	-h | --help) sed -n '2,21s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "parley: usage: bench/query/run.sh" >&2; exit 2 ;;
esac

customers=${BENCH_QUERY_CUSTOMERS:-1000000}
active=${BENCH_QUERY_ACTIVE:-800000}
conversations=${BENCH_QUERY_CONVERSATIONS:-2000000}
messages=${BENCH_QUERY_MESSAGES:-10000000}
jobs=${BENCH_QUERY_JOBS:-$(nproc 2>/dev/null || echo 2)}
seconds=${BENCH_QUERY_SECONDS:-15}
clients=${BENCH_QUERY_CLIENTS:-1}
first_pg_port=${BENCH_PG_PORT:-55454}
pg_settings=${BENCH_PG_SETTINGS:-'shared_buffers=512MB max_wal_size=8GB checkpoint_timeout=30min'}
python=python3
[[ -x /usr/bin/python3 ]] && python=/usr/bin/python3

die() {
	echo "parley: $*" >&2
	exit 1
}
for v in customers active conversations messages jobs seconds clients; do
	if ! [[ ${!v} =~ ^[0-9]+$ ]] || ((${!v} == 0)); then
		die "$v must be a positive whole number (got '${!v}')"
	fi
done
((active <= customers)) || die "BENCH_QUERY_ACTIVE must not exceed BENCH_QUERY_CUSTOMERS"
((active <= conversations && conversations <= messages)) ||
	die "need active customers <= conversations <= messages"

work=
cluster=
keep_cluster=no
cleanup() {
	if [[ -n $cluster ]]; then
		if [[ $keep_cluster == yes ]]; then
			"$root/scripts/pg.sh" stop "$cluster" >/dev/null 2>&1 || true
		else
			"$root/scripts/pg.sh" destroy "$cluster" >/dev/null 2>&1 ||
				echo "parley: could not remove the bench cluster in $cluster" >&2
		fi
		cluster=
	fi
	if [[ -n $work ]]; then
		rm -rf -- "$work"
		work=
	fi
}
trap cleanup EXIT
trap 'echo "parley: interrupted" >&2; exit 130' INT TERM

# ------------------------------------------------------------------- build
if [[ -n ${BENCH_BUILD_DIR:-} ]]; then
	build=$(cd "$BENCH_BUILD_DIR" && pwd)
else
	"$root/scripts/deps.sh"
	CFLAGS=-O2 "$root/scripts/build.sh" build >/dev/null
	build=$root/build
fi
[[ -x $build/parleyd ]] || die "$build/parleyd is missing; build the tree first"
bindir=$("$root/scripts/pg.sh" bindir)
work=$(mktemp -d "${TMPDIR:-/tmp}/parley-query.XXXXXX")

# -------------------------------------------------------------- PostgreSQL
if [[ -n ${BENCH_QUERY_CLUSTER:-} ]]; then
	cluster=$BENCH_QUERY_CLUSTER
	keep_cluster=yes
else
	cluster=$(mktemp -d "${TMPDIR:-/tmp}/parley-query-pg.XXXXXX")
fi
pg_port=
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
dsn=$("$root/scripts/pg.sh" url "$cluster" "$pg_port" parley_query)
psql_q() {
	"$bindir/psql" -X -v ON_ERROR_STOP=1 "$dsn" "$@"
}

# ------------------------------------------------------------------- data
sizes="$customers/$active/$conversations/$messages"
have=
if [[ $(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = 'parley_query'") == 1 ]]; then
	have=$(psql_q -t -A -c "SELECT sizes FROM bench_generated" 2>/dev/null || true)
	if [[ $have != "$sizes" ]]; then
		psql_admin -c 'DROP DATABASE parley_query'
		have=
	fi
fi

now() { date +%s.%N; }
took() { "$python" -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$@"; }

if [[ -z $have ]]; then
	psql_admin -c 'CREATE DATABASE parley_query'
	cat >"$work/parley.json" <<-EOF
		{
		  "listen": "127.0.0.1:1",
		  "public_url": "http://127.0.0.1:1",
		  "database": { "dsn": "$dsn" },
		  "plugin_dir": "$build/plugin-dir",
		  "log": { "level": "warn", "format": "text" }
		}
	EOF
	"$build/parleyd" -c "$work/parley.json" --migrate >"$work/migrate.log" 2>&1 ||
		{ cat "$work/migrate.log" >&2; die "parleyd --migrate failed"; }

	gen() { # gen STEP [psql -v args]: one step of gen.sql
		local step=$1
		shift
		psql_q -q -o /dev/null -v "step_$step=1" -v customers="$customers" -v active="$active" \
			-v conversations="$conversations" -v messages="$messages" "$@" -f "$root/bench/query/gen.sql"
	}
	echo "parley: generating $customers customers, $conversations conversations, $messages messages ($jobs sessions)"
	t0=$(now)
	gen prepare
	gen base
	t1=$(now)
	echo "parley:   customers, identities, cases, conversations: $(took "$t0" "$t1") s"
	per=$(((messages + jobs - 1) / jobs))
	gen_pids=()
	for ((j = 0; j < jobs; j++)); do
		lo=$((j * per + 1))
		hi=$(((j + 1) * per))
		((hi > messages)) && hi=$messages
		((lo <= hi)) || continue
		gen messages -v lo="$lo" -v hi="$hi" &
		gen_pids+=($!)
	done
	for pid in "${gen_pids[@]}"; do
		wait "$pid" || die "loading messages failed"
	done
	t2=$(now)
	echo "parley:   messages: $(took "$t1" "$t2") s"
	gen finish
	t3=$(now)
	echo "parley:   revisions, sequences, indexes and constraints rebuilt: $(took "$t2" "$t3") s"
	"$bindir/vacuumdb" -q -j "$jobs" --analyze "$dsn"
	t4=$(now)
	echo "parley:   VACUUM ANALYZE: $(took "$t3" "$t4") s"
	echo "parley: data generated in $(took "$t0" "$t4") s"
	psql_q -q -c "CREATE TABLE bench_generated AS SELECT '$sizes'::text AS sizes"
else
	echo "parley: reusing the data in $cluster ($sizes)"
fi

echo
psql_q -P footer=off -c "
SELECT c.relname AS \"table\", to_char(c.reltuples, 'FM999,999,999,999') AS \"rows (estimate)\",
       pg_size_pretty(pg_table_size(c.oid)) AS \"table\",
       pg_size_pretty(pg_indexes_size(c.oid)) AS indexes
  FROM pg_class c
 WHERE c.relname IN ('customer', 'identity', 'conversation', 'message', 'message_revision',
                     'support_case', 'case_reference')
 ORDER BY c.reltuples DESC"
psql_q -t -A -c "SELECT 'open or pending conversations: ' || count(*) || ', with a due time: ' ||
                        count(next_response_due_at)
                   FROM conversation WHERE status IN ('open', 'pending')"

# ------------------------------------------------------------- measure
# pgbench_run NAME SECONDS [-l]: the script bench/query/NAME.sql.
pgbench_run() {
	local name=$1 secs=$2
	shift 2
	(cd "$work" && "$bindir/pgbench" -n -M extended -c "$clients" -j "$clients" -T "$secs" \
		-D active="$active" -f "$root/bench/query/$name.sql" "$@" \
		-h 127.0.0.1 -p "$pg_port" -U postgres parley_query)
}
percentiles() { # percentiles LOGGLOB: p50 p90 p99 max in ms and the count
	"$python" - "$@" <<-'EOF'
		import glob, sys
		lat = []
		for name in glob.glob(sys.argv[1]):
		    for line in open(name):
		        parts = line.split()
		        if len(parts) >= 3 and parts[2].isdigit():   # client tx latency_us ...
		            lat.append(int(parts[2]) / 1000.0)
		lat.sort()
		def pct(p):
		    return lat[max(0, min(len(lat) - 1, -(-len(lat) * p // 100) - 1))]
		if lat:
		    print("%d queries, p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms"
		          % (len(lat), pct(50), pct(90), pct(99), lat[-1]))
		else:
		    print("no queries logged")
	EOF
}

echo
echo "parley: measuring, $clients client(s), ${seconds}s per query after a 3s warm-up"
results=()
for q in queue timeline; do
	pgbench_run "$q" 3 >/dev/null 2>&1
	pgbench_run "$q" "$seconds" -l --log-prefix="$q" >"$work/$q.txt" 2>&1 ||
		{ cat "$work/$q.txt" >&2; die "pgbench failed for $q"; }
	results+=("$(percentiles "$work/$q.*")")
done

echo
echo "plans (EXPLAIN ANALYZE, BUFFERS; warm cache):"
echo
echo "-- a) the 50 open conversations due first"
psql_q -c "EXPLAIN (ANALYZE, BUFFERS) $(sed -e '/^--/d' -e 's/;$//' "$root/bench/query/queue.sql")"
timeline_sql=$(sed -e '/^--/d' -e '/^\\set/d' -e 's/;$//' "$root/bench/query/timeline.sql")
typical=$(psql_q -t -A -c "SELECT ($active / 2) + 1")
echo "-- b) one customer's timeline: customer $typical (typical)"
psql_q -c "EXPLAIN (ANALYZE, BUFFERS) ${timeline_sql//:customer/$typical}"
echo "-- b) one customer's timeline: customer 1 (owner of the longest conversation)"
psql_q -c "EXPLAIN (ANALYZE, BUFFERS) ${timeline_sql//:customer/1}"
psql_q -t -A -c "SELECT 'customer 1 has ' || count(*) || ' messages in ' || count(DISTINCT c.id) || ' conversations'
                   FROM conversation c JOIN message m ON m.conversation_id = c.id WHERE c.customer_id = 1"

echo
echo "results ($clients client(s), ${seconds}s each, target p99 <= 20 ms):"
echo "  a) 50 open conversations by due time:  ${results[0]}"
echo "  b) one customer's full timeline:       ${results[1]}"
