#!/usr/bin/env bash
# Install the Debian packages Parley needs to build, test and run, and only
# those that are missing. A fast no-op when everything is present.
#
#   scripts/deps.sh           build, test and run dependencies
#   scripts/deps.sh --bench   the same plus wrk and valgrind, for bench/
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
	build-essential autoconf automake libtool pkg-config
	libevent-dev libcurl4-openssl-dev libjansson-dev libpq-dev libssl-dev
	libhttp-parser-dev libcmocka-dev libutf8proc-dev
	postgresql
	python3 python3-pytest python3-psycopg2 python3-yaml python3-jsonschema
	curl openssl ca-certificates procps
	clang python3-aiosmtpd
)
case "${1:-}" in
	--bench) packages+=(wrk valgrind) ;;
	"") ;;
	*) echo "parley: usage: scripts/deps.sh [--bench]" >&2; exit 2 ;;
esac

# One dpkg-query call for all packages keeps the no-op case fast. Unknown
# packages make dpkg-query complain on stderr; they simply count as missing.
declare -A installed=()
while read -r name status; do
	[[ $status == "install ok installed" ]] && installed[$name]=1
done < <(dpkg-query -W -f='${Package} ${Status}\n' "${packages[@]}" 2>/dev/null || true)

missing=()
for p in "${packages[@]}"; do
	[[ -n ${installed[$p]:-} ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "parley: installing missing packages: ${missing[*]}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "parley: not root and sudo is not installed; as root run: apt-get install ${missing[*]}" >&2
		exit 1
	fi
	sudo=(sudo)
fi
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
	apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "parley: dependencies installed"
