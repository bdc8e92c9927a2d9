#!/usr/bin/env bash
# Build Parley out of tree: the daemon, the plugins, the unit test programs
# and the test plugins (built, not run). Re-running is incremental.
#
#   scripts/build.sh                     normal build in build/
#   scripts/build.sh --sanitizers        ASan+UBSan build in build-asan/
#   scripts/build.sh [--sanitizers] DIR  either, in DIR (relative to the repo root)
#
# Extra configure arguments can be given in PARLEY_CONFIGURE_ARGS; they only
# apply when DIR is configured for the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

sanitizers=no
builddir=
for arg in "$@"; do
	case "$arg" in
		--sanitizers) sanitizers=yes ;;
		-*) echo "parley: usage: scripts/build.sh [--sanitizers] [BUILDDIR]" >&2; exit 2 ;;
		*) builddir=$arg ;;
	esac
done
if [[ -z $builddir ]]; then
	[[ $sanitizers == yes ]] && builddir=build-asan || builddir=build
fi

# Regenerate the build system when it is missing or older than its sources.
if [[ ! -x configure || configure -ot configure.ac || configure -ot Makefile.am ]]; then
	echo "parley: running autoreconf -fi"
	mkdir -p m4
	autoreconf -fi
fi

mkdir -p "$builddir"
cd "$builddir"
if [[ ! -f Makefile ]]; then
	configure_args=()
	[[ $sanitizers == yes ]] && configure_args+=(--enable-sanitizers)
	# Word splitting of PARLEY_CONFIGURE_ARGS is intended.
	# shellcheck disable=SC2206
	configure_args+=(${PARLEY_CONFIGURE_ARGS:-})
	echo "parley: configuring $builddir/ ${configure_args[*]}"
	"$root/configure" "${configure_args[@]}"
elif [[ $sanitizers == yes ]] && ! grep -q '^SANITIZER_FLAGS = -fsanitize' Makefile; then
	echo "parley: $builddir/ was configured without sanitizers; remove it or pick another directory" >&2
	exit 1
fi

jobs=$(nproc 2>/dev/null || echo 2)
echo "parley: building $builddir/"
make -j"$jobs"
# TESTS= builds the unit test programs and test plugins without running them.
make -j"$jobs" check TESTS=
echo "parley: built $builddir/"
