#!/usr/bin/env bash
# The ingest SQL's cost in instructions, this tree against another, in one
# run: a figure that does not move with the machine's load (valgrind counts
# instructions, not seconds; the same inputs give the same count).
#
#   bench/ingest/instructions.sh OTHER_BUILD_DIR [BATCHES]
#
# OTHER_BUILD_DIR is a built tree of the version to compare with (e.g. a
# `git worktree` of an older commit, built with scripts/build.sh); this
# tree's build/ is the other side (built here when missing). Both schemas
# are made by their own `parleyd --migrate` in one throwaway cluster. The
# batches are the mix of bench/ingest (dbdrive, 100 items each, seed 5),
# captured once from the statement log and then replayed, identical, into
# each schema by a single-user postgres under callgrind. Prints the
# instructions of each replay and their ratio (this tree / the other).
#
# Needs valgrind (scripts/deps.sh --bench). Takes about two minutes for 40
# batches. Environment: BENCH_PG_PORT [55470] first port tried.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
die() { echo "parley: $*" >&2; exit 1; }

[[ $# -ge 1 && $# -le 2 ]] || die "usage: bench/ingest/instructions.sh OTHER_BUILD_DIR [BATCHES]"
other=$(cd "$1" && pwd) || die "no such directory: $1"
batches=${2:-40}
[[ $batches =~ ^[1-9][0-9]*$ ]] || die "BATCHES must be a whole number"
[[ -x $other/parleyd ]] || die "$other/parleyd is missing; build that tree first"
"$root/scripts/deps.sh" --bench
[[ -x $root/build/parleyd && -x $root/build/bench/ingest/dbdrive ]] ||
	"$root/scripts/build.sh" build >/dev/null
command -v valgrind >/dev/null || die "valgrind is missing (scripts/deps.sh --bench)"
bindir=$("$root/scripts/pg.sh" bindir)

work=$(mktemp -d "${TMPDIR:-/tmp}/parley-instr.XXXXXX")
cluster=$work/pg
cleanup() { "$root/scripts/pg.sh" destroy "$cluster" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

port=
for ((p = ${BENCH_PG_PORT:-55470}; p < ${BENCH_PG_PORT:-55470} + 20; p++)); do
	rc=0
	"$root/scripts/pg.sh" start --fast "$cluster" "$p" >"$work/pg.log" 2>&1 || rc=$?
	if ((rc == 0)); then port=$p; break; fi
	((rc == 3)) || { cat "$work/pg.log" >&2; die "PostgreSQL did not start"; }
done
[[ -n $port ]] || die "no free port for PostgreSQL"
dsn() { echo "host=127.0.0.1 port=$port user=postgres dbname=$1"; }
psql_q() { "$bindir/psql" -X -q -v ON_ERROR_STOP=1 "$(dsn postgres)" -c "$1" >/dev/null; }

# One database per side, made by that side's parleyd; one to capture in.
for side in this other capture; do
	psql_q "CREATE DATABASE instr_$side"
	echo "{\"database\": {\"dsn\": \"$(dsn "instr_$side")\"}}" >"$work/$side.json"
done
"$root/build/parleyd" -c "$work/this.json" --migrate >/dev/null 2>&1 || die "migrating this tree's schema failed"
"$other/parleyd" -c "$work/other.json" --migrate >/dev/null 2>&1 || die "migrating the other schema failed"
"$root/build/parleyd" -c "$work/capture.json" --migrate >/dev/null 2>&1 || die "migrating the capture database failed"

# Capture the batches' statements with their parameters.
psql_q "ALTER DATABASE instr_capture SET log_statement = 'all'"
psql_q "ALTER SYSTEM SET log_parameter_max_length = -1"
psql_q "SELECT pg_reload_conf()"
log=$cluster/postgres.log
start=$(wc -c <"$log")
"$root/build/bench/ingest/dbdrive" --dsn "$(dsn instr_capture)" --connections 1 --depth 1 \
	--batch 100 --sql function --prefix instr --seed 5 --warmup 0 --duration 3 >/dev/null
tail -c +"$((start + 1))" "$log" >"$work/capture.log"
python3 - "$work/capture.log" "$batches" >"$work/batches.sql" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
found = re.findall(r"DETAIL:  parameters: \$1 = '((?:[^']|'')*)', \$2 = '((?:[^']|'')*)'", text)
want = int(sys.argv[2])
if len(found) < want:
    sys.exit("parley: only %d batches were captured, %d wanted" % (len(found), want))
for items, opts in found[:want]:
    print("SELECT parley_ingest_batch('%s'::jsonb, '%s'::jsonb);" % (items, opts))
EOF
"$root/scripts/pg.sh" stop "$cluster" >/dev/null

# Replay into each schema, counted. Single-user mode runs as the cluster's
# owner (the system user parley when this runs as root).
owner=$(stat -c %U "$cluster/data")
chmod 0755 "$work"
chmod 0644 "$work/batches.sql"
mkdir "$work/counts"
chown "$owner" "$work/counts"
declare -A counted
for side in this other; do
	out=$work/callgrind-$side.out
	as_owner=()
	[[ $(id -un) == "$owner" ]] || as_owner=(runuser -u "$owner" --)
	"${as_owner[@]}" valgrind --tool=callgrind --callgrind-out-file="$work/counts/$side" \
		"$bindir/postgres" --single -D "$cluster/data" -c fsync=off -c autovacuum=off \
		"instr_$side" <"$work/batches.sql" >"$work/replay-$side.txt" 2>"$out"
	grep -q ERROR "$work/replay-$side.txt" && die "the replay into $side's schema failed: $(grep -m1 ERROR "$work/replay-$side.txt")"
	counted[$side]=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out")
	[[ -n ${counted[$side]} ]] || die "callgrind printed no count for $side"
done

echo "ingest SQL, $batches batches of 100 items (bench/ingest's mix), instructions of a single-user postgres:"
echo "  this tree ($root):   ${counted[this]}"
echo "  other ($other):   ${counted[other]}"
python3 -c "print('  this / other: %.4f' % (${counted[this]} / ${counted[other]}))"
echo "  (each count includes the same start-up of a single-user backend)"
