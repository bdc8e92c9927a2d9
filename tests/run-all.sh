#!/usr/bin/env bash
# Run every test suite of one build tree and count the results:
#   - each cmocka unit program $PARLEY_BUILD_DIR/tests/unit/test_* (TAP output)
#   - the end-to-end tests in tests/e2e with pytest
#
# Environment:
#   PARLEY_BUILD_DIR  build tree to test (required)
#   PARLEY_SRCDIR     source tree (default: this script's repository)
#   PARLEY_LOG_DIR    where each suite's full output goes (default: $PARLEY_BUILD_DIR/test-logs)
#   PARLEY_TEST_DSN   PostgreSQL for tests that need one (they skip without it)
#   PARLEY_PYTHON     interpreter for pytest (default: Debian's /usr/bin/python3)
#   PARLEY_UNIT_TIMEOUT   seconds one unit test program may run (default 300)
#   PARLEY_E2E_TIMEOUT    seconds the whole end-to-end suite may run (default 1800)
#
# Prints "<suite>: N passed, N failed" per suite (plus the tail of a failed
# suite's log), and last a machine-readable line "TOTAL <passed> <failed>".
# Exits 1 when anything failed. A suite that crashes, exits non-zero or prints
# no result counts as a failure even when no single test says so.
set -euo pipefail

srcdir=${PARLEY_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
: "${PARLEY_BUILD_DIR:?parley: set PARLEY_BUILD_DIR to the build tree to test}"
build=$(cd "$PARLEY_BUILD_DIR" && pwd)
logdir=${PARLEY_LOG_DIR:-$build/test-logs}
unit_timeout=${PARLEY_UNIT_TIMEOUT:-300}
e2e_timeout=${PARLEY_E2E_TIMEOUT:-1800}
if [[ -n ${PARLEY_PYTHON:-} ]]; then
	python=$PARLEY_PYTHON
elif [[ -x /usr/bin/python3 ]]; then
	# deps.sh installs pytest and psycopg2 for Debian's interpreter, which
	# may not be the first python3 on PATH.
	python=/usr/bin/python3
else
	python=python3
fi
mkdir -p "$logdir"
export PARLEY_BUILD_DIR=$build PARLEY_SRCDIR=$srcdir
# Keep the source tree free of bytecode (it may be read-only, e.g. distcheck).
export PYTHONDONTWRITEBYTECODE=1

total_passed=0
total_failed=0

# report LABEL PASSED FAILED SKIPPED LOG
report() {
	local label=$1 passed=$2 failed=$3 skipped=$4 log=$5 line
	line="$label: $passed passed, $failed failed"
	((skipped > 0)) && line+=" ($skipped skipped)"
	echo "$line"
	if ((failed > 0)); then
		echo "---- $label failed; last lines of $log:"
		tail -n 40 "$log" | sed 's/^/    /'
		echo "----"
	fi
	total_passed=$((total_passed + passed))
	total_failed=$((total_failed + failed))
}

# A cmocka program in TAP mode prints "1..N", then "ok N - name",
# "not ok N - name" or "not ok N # SKIP name" per test.
run_unit() {
	local bin=$1 name log rc=0 plan passed failed skipped seen extra
	name=$(basename "$bin")
	log=$logdir/$name.log
	# The outer 2>/dev/null only hides bash's own "Aborted" notice for a
	# crashed program; the exit code below says the same in the log.
	{ (cd "$build" && CMOCKA_MESSAGE_OUTPUT=TAP srcdir=$srcdir \
		timeout -k 10 "$unit_timeout" "$bin") >"$log" 2>&1 || rc=$?; } 2>/dev/null
	if ((rc == 124)); then
		echo "parley: $name timed out after $unit_timeout s (PARLEY_UNIT_TIMEOUT)" >>"$log"
	fi
	plan=$(sed -n 's/^1\.\.\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
	skipped=$(grep -Eci '^(not )?ok [0-9]+.*# *skip' "$log" || true)
	passed=$(grep -E '^ok [0-9]+' "$log" | grep -Evic '# *skip' || true)
	failed=$(grep -E '^not ok [0-9]+' "$log" | grep -Evic '# *skip' || true)
	seen=$((passed + failed + skipped))
	extra=0
	if [[ -z $plan ]]; then
		echo "parley: $name printed no TAP plan (exit code $rc)" >>"$log"
		extra=1
	elif ((plan > seen)); then
		echo "parley: $name stopped after $seen of $plan tests (exit code $rc)" >>"$log"
		extra=$((plan - seen))
	fi
	if ((rc != 0 && failed + extra == 0)); then
		echo "parley: $name exited with code $rc" >>"$log"
		extra=1
	fi
	report "$name" "$passed" $((failed + extra)) "$skipped" "$log"
}

# summary_count SUMMARY WORD: the number before WORD ("3 passed" -> 3), or nothing.
summary_count() {
	sed -n -E "s/.*\\b([0-9]+) $2\\b.*/\\1/p" <<<"$1" | head -n 1
}

# pytest -q ends with a summary such as "3 passed, 1 failed, 2 errors in 1.2s".
run_e2e() {
	local log=$logdir/e2e.log rc=0 summary passed failed errors skipped extra=0
	if [[ ! -d $srcdir/tests/e2e ]]; then
		echo "parley: $srcdir/tests/e2e is missing" >"$log"
		report e2e 0 1 0 "$log"
		return
	fi
	(cd "$srcdir" && timeout -k 10 "$e2e_timeout" \
		"$python" -m pytest -q -p no:cacheprovider "$srcdir/tests/e2e") >"$log" 2>&1 || rc=$?
	if ((rc == 124)); then
		echo "parley: pytest timed out after $e2e_timeout s (PARLEY_E2E_TIMEOUT)" >>"$log"
	fi
	summary=$(grep -E '^=*.*\b(passed|failed|errors?|skipped|no tests ran)\b.* in [0-9.]+s' "$log" | tail -n 1 || true)
	passed=$(summary_count "$summary" passed)
	failed=$(summary_count "$summary" failed)
	errors=$(summary_count "$summary" 'errors?')
	skipped=$(summary_count "$summary" skipped)
	passed=${passed:-0} failed=${failed:-0} errors=${errors:-0} skipped=${skipped:-0}
	failed=$((failed + errors))
	if ((rc == 5)); then
		echo "parley: pytest collected no tests" >>"$log"
		extra=1
	elif [[ -z $summary ]]; then
		echo "parley: pytest printed no summary (exit code $rc)" >>"$log"
		extra=1
	elif ((rc != 0 && failed == 0)); then
		echo "parley: pytest exited with code $rc" >>"$log"
		extra=1
	fi
	report e2e "$passed" $((failed + extra)) "$skipped" "$log"
}

shopt -s nullglob
units=()
for bin in "$build"/tests/unit/test_*; do
	# Programs only: not the .o, .log or .trs files automake leaves next to them.
	[[ -f $bin && -x $bin && $(basename "$bin") != *.* ]] && units+=("$bin")
done
if ((${#units[@]} == 0)); then
	log=$logdir/unit.log
	echo "parley: no unit test programs in $build/tests/unit (was 'make check TESTS=' run?)" >"$log"
	report unit 0 1 0 "$log"
fi
for bin in "${units[@]}"; do
	run_unit "$bin"
done
run_e2e

echo "TOTAL $total_passed $total_failed"
((total_failed == 0))
