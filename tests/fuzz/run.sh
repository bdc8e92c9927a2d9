#!/usr/bin/env bash
# Build a fuzz target with clang's libFuzzer, AddressSanitizer and
# UndefinedBehaviorSanitizer, and run it for a bounded time.
#
#   tests/fuzz/run.sh [-t SECONDS] [-o DIR] NAME...     e.g. tests/fuzz/run.sh -t 600 meta
#   tests/fuzz/run.sh -l                                 list the targets
#
# A target NAME is tests/fuzz/fuzz_NAME.c (defining LLVMFuzzerTestOneInput)
# plus the repository-relative .c files listed in tests/fuzz/NAME.sources,
# seeded from tests/fuzz/corpus/NAME/ (copied: the seeds stay as they are).
# SECONDS defaults to $PARLEY_FUZZ_SECONDS or 30. Artifacts (binaries, the
# grown corpus, any crash-*/leak-* input) go to DIR (default build/fuzz).
#
# Prints "fuzz NAME: ok (N runs)" or "fuzz NAME: FAILED (...)" per target and
# exits 1 when any target failed to build, crashed, leaked or hit a
# sanitizer report.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${PARLEY_FUZZ_SECONDS:-30}
out=$root/build/fuzz

list_targets() {
	local f
	for f in "$root"/tests/fuzz/*.sources; do
		[[ -e $f ]] && basename "$f" .sources
	done
}

while getopts "t:o:l" opt; do
	case $opt in
	t) seconds=$OPTARG ;;
	o) out=$OPTARG ;;
	l) list_targets; exit 0 ;;
	*) echo "usage: tests/fuzz/run.sh [-t SECONDS] [-o DIR] NAME... | -l" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
(($# > 0)) || { echo "usage: tests/fuzz/run.sh [-t SECONDS] [-o DIR] NAME... | -l" >&2; exit 2; }
command -v clang >/dev/null || { echo "parley: clang is missing (scripts/deps.sh installs it)" >&2; exit 1; }
mkdir -p "$out"

status=0
for name in "$@"; do
	src=$root/tests/fuzz/fuzz_$name.c
	list=$root/tests/fuzz/$name.sources
	log=$out/$name.log
	if [[ ! -f $src || ! -f $list ]]; then
		echo "fuzz $name: FAILED (no tests/fuzz/fuzz_$name.c or $name.sources)"
		status=1
		continue
	fi
	sources=()
	incs=(-I"$root/include")
	for s in $(cat "$list"); do
		sources+=("$root/$s")
		incs+=(-I"$root/$(dirname "$s")")
	done
	# shellcheck disable=SC2046
	if ! clang -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=undefined "${incs[@]}" "$src" "${sources[@]}" \
		$(pkg-config --cflags --libs jansson libcrypto libutf8proc) -o "$out/fuzz_$name" >"$log" 2>&1; then
		echo "fuzz $name: FAILED (does not build; see $log)"
		status=1
		continue
	fi
	corpus=$out/corpus-$name
	rm -rf "$corpus"
	mkdir -p "$corpus"
	if [[ -d $root/tests/fuzz/corpus/$name ]]; then
		cp "$root/tests/fuzz/corpus/$name"/* "$corpus"/ 2>/dev/null || true
	fi
	if ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		"$out/fuzz_$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-max_len=65536 -print_final_stats=1 -artifact_prefix="$out/$name-" "$corpus" \
		>>"$log" 2>&1; then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
		echo "fuzz $name: ok (${runs:-?} runs in ${seconds} s)"
	else
		echo "fuzz $name: FAILED (see $log; the input is in $out/$name-*)"
		tail -n 30 "$log" | sed 's/^/    /'
		status=1
	fi
done
exit $status
