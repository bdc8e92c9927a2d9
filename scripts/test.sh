#!/usr/bin/env bash
# Run every test Parley has, from a fresh clone on Debian 12:
#   1. install missing packages (scripts/deps.sh)
#   2. build build/ (normal) and build-asan/ (AddressSanitizer + UBSan)
#   3. start a throwaway PostgreSQL (--fast) in a temporary directory
#   4. run tests/run-all.sh (unit + end-to-end) against each build
#   5. each fuzz target in tests/fuzz for PARLEY_FUZZ_SECONDS (default 30) s
#   6. make distcheck in build/ (one counted test; PARLEY_SKIP_DISTCHECK=1 skips it)
#   7. remove the cluster (also on failure or Ctrl-C)
#
# Prints one line per suite and, last, exactly one line "N passed, N failed".
# Exits 1 when anything failed, crashed or did not run. Full logs: build/test-logs/.
#
# Environment: PARLEY_TEST_PG_PORT (first port to try, default 55433),
# PARLEY_SKIP_DISTCHECK=1, PARLEY_FUZZ_SECONDS, PARLEY_UNIT_TIMEOUT and
# PARLEY_E2E_TIMEOUT (see tests/run-all.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
logs=$root/build/test-logs

passed=0
failed=0
cluster=

remove_cluster() {
	if [[ -n $cluster ]]; then
		"$root/scripts/pg.sh" destroy "$cluster" >>"$logs/postgres.log" 2>&1 ||
			echo "parley: could not remove the test cluster in $cluster" >&2
		cluster=
	fi
}
trap remove_cluster EXIT
trap 'echo "parley: interrupted" >&2; exit 130' INT TERM

# The one and only place the final line is printed.
finish() {
	remove_cluster
	if ((passed + failed == 0)); then
		echo "parley: no test ran" >&2
		failed=1
	fi
	echo "$passed passed, $failed failed"
	((failed == 0)) || exit 1
	exit 0
}

# count_step LABEL OK|FAIL LOG: a step that is one test of its own.
count_step() {
	local label=$1 result=$2 log=$3
	if [[ $result == OK ]]; then
		echo "$label: 1 passed, 0 failed"
		passed=$((passed + 1))
	else
		echo "$label: 0 passed, 1 failed"
		echo "---- $label failed; last lines of $log:"
		tail -n 40 "$log" | sed 's/^/    /'
		echo "----"
		failed=$((failed + 1))
	fi
}

if ! "$root/scripts/deps.sh"; then
	echo "parley: installing the dependencies failed (see above)" >&2
	failed=1
	finish
fi

rm -rf "$logs"
mkdir -p "$logs"

build_ok=()
for b in build build-asan; do
	args=("$b")
	[[ $b == build-asan ]] && args=(--sanitizers "$b")
	echo "parley: building $b/ (log: build/test-logs/$b-build.log)"
	if "$root/scripts/build.sh" "${args[@]}" >"$logs/$b-build.log" 2>&1; then
		build_ok+=("$b")
	else
		count_step "$b (compile)" FAIL "$logs/$b-build.log"
	fi
done
((${#build_ok[@]} > 0)) || finish

# A throwaway cluster; the next ports are tried when one is taken.
cluster=$(mktemp -d "${TMPDIR:-/tmp}/parley-test-pg.XXXXXX")
first_port=${PARLEY_TEST_PG_PORT:-55433}
port=
for ((p = first_port; p < first_port + 20; p++)); do
	rc=0
	"$root/scripts/pg.sh" start --fast "$cluster" "$p" >>"$logs/postgres.log" 2>&1 || rc=$?
	if ((rc == 0)); then
		port=$p
		break
	fi
	((rc == 3)) || break
done
if [[ -z $port ]]; then
	count_step "postgresql (start)" FAIL "$logs/postgres.log"
	finish
fi
echo "parley: test PostgreSQL on 127.0.0.1:$port"

PARLEY_TEST_DSN=$("$root/scripts/pg.sh" url "$cluster" "$port")
PARLEY_TEST_PG_STOP=$(printf '%q ' "$root/scripts/pg.sh" stop "$cluster")
PARLEY_TEST_PG_START=$(printf '%q ' "$root/scripts/pg.sh" start --fast "$cluster" "$port")
PARLEY_SRCDIR=$root
export PARLEY_TEST_DSN PARLEY_TEST_PG_STOP PARLEY_TEST_PG_START PARLEY_SRCDIR

# run_suites BUILDDIR [VAR=value...]: tests/run-all.sh on one build, its suite
# lines shown as they come, its TOTAL line added to ours.
run_suites() {
	local b=$1 log=$logs/$1.log total
	shift
	env "$@" PARLEY_BUILD_DIR="$root/$b" PARLEY_LOG_DIR="$logs/$b" \
		"$root/tests/run-all.sh" </dev/null 2>&1 |
		tee "$log" | grep --line-buffered -v '^TOTAL ' | sed -u "s|^|[$b] |" || true
	total=$(sed -n 's/^TOTAL \([0-9][0-9]*\) \([0-9][0-9]*\)$/\1 \2/p' "$log" | tail -n 1)
	if [[ -z $total ]]; then
		count_step "$b (test run)" FAIL "$log"
		return
	fi
	passed=$((passed + ${total% *}))
	failed=$((failed + ${total#* }))
}

for b in "${build_ok[@]}"; do
	if [[ $b == build-asan ]]; then
		run_suites "$b" \
			ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 \
			UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
	else
		run_suites "$b"
	fi
done

# Every inbound parser's fuzz target, for PARLEY_FUZZ_SECONDS each (default
# 30; longer runs: tests/fuzz/run.sh -t SECONDS NAME). One test per target.
for target in $("$root/tests/fuzz/run.sh" -l); do
	if "$root/tests/fuzz/run.sh" -o "$root/build/fuzz" "$target" >"$logs/fuzz-$target.log" 2>&1; then
		count_step "fuzz $target" OK "$logs/fuzz-$target.log"
	else
		count_step "fuzz $target" FAIL "$logs/fuzz-$target.log"
	fi
done

if [[ ${PARLEY_SKIP_DISTCHECK:-} == 1 ]]; then
	echo "distcheck: skipped (PARLEY_SKIP_DISTCHECK=1)"
elif [[ " ${build_ok[*]} " != *" build "* ]]; then
	echo "distcheck: not run (build/ did not compile)"
else
	echo "parley: make distcheck (log: build/test-logs/distcheck.log)"
	# The tarball's own unit tests run in parallel there; the database tests
	# already ran above, so they skip instead of sharing one server.
	if env -u PARLEY_TEST_DSN make -C "$root/build" -j"$(nproc)" distcheck \
		</dev/null >"$logs/distcheck.log" 2>&1; then
		count_step distcheck OK "$logs/distcheck.log"
	else
		count_step distcheck FAIL "$logs/distcheck.log"
	fi
fi

finish
