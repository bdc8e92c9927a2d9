#!/usr/bin/env bash
# A private PostgreSQL cluster in a directory, for development and tests.
#
#   scripts/pg.sh start [--fast] DIR PORT  create it once (initdb), start it on 127.0.0.1:PORT
#   scripts/pg.sh stop DIR [PORT]          stop it (fast shutdown; no error when stopped)
#   scripts/pg.sh status DIR [PORT]        say whether it runs; exit 0 when it does, 3 when not
#   scripts/pg.sh url DIR PORT [DBNAME]    print a libpq DSN (dbname defaults to postgres)
#   scripts/pg.sh destroy DIR [PORT]       stop it and delete its files
#   scripts/pg.sh bindir                   print the PostgreSQL server bin directory
#
# This is a DEVELOPMENT cluster. It trusts every connection ("initdb -A trust",
# superuser "postgres", no password), which is tolerable only because it
# listens on 127.0.0.1 and on a unix socket in DIR/socket that only its owner
# may enter (mode 0700). Every local user of the machine can still reach it over
# TCP: never keep data in it that matters, never use this setup in production.
#
# --fast turns durability off (fsync, synchronous_commit, full_page_writes):
# for throwaway test clusters only, never for data you want to keep.
#
# initdb refuses to run as root, so as root the cluster belongs to the system
# user "parley" (created when missing). When that user cannot reach DIR, e.g. a
# clone under /root (mode 0700), the files live in
# /var/lib/parley-dev/clusters/<sha1 of DIR> and DIR is a symlink to them.
#
# Layout: DIR/data (PGDATA), DIR/socket, DIR/postgres.log.
# Exit codes: 0 ok, 1 error, 2 usage, 3 not running (status) or port busy (start).
set -euo pipefail

readonly run_user=parley
readonly run_home=/var/lib/parley-dev
readonly marker=PARLEY_DEV_CLUSTER

usage() {
	sed -n '3,9s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

die() {
	echo "parley: $*" >&2
	exit 1
}

info() {
	echo "parley: $*"
}

# The server binaries are not on PATH on Debian: take the highest version.
find_bindir() {
	local d best=
	for d in /usr/lib/postgresql/*/bin; do
		[[ -x $d/initdb && -x $d/pg_ctl ]] && best+="$d"$'\n'
	done
	best=$(printf '%s' "$best" | sort -V | tail -n 1)
	[[ -n $best ]] || die "no PostgreSQL server found under /usr/lib/postgresql (run scripts/deps.sh)"
	echo "$best"
}

is_root() {
	[[ $(id -u) -eq 0 ]]
}

# Run a command as the cluster's owner: "parley" as root, ourselves otherwise.
# cd / first so the server tools never trip over an unreadable cwd.
as_owner() {
	if is_root; then
		(cd / && runuser -u "$run_user" -- "$@")
	else
		"$@"
	fi
}

ensure_run_user() {
	if ! id -u "$run_user" >/dev/null 2>&1; then
		info "creating system user $run_user (home $run_home) to own development clusters"
		useradd --system --create-home --home-dir "$run_home" \
			--shell /usr/sbin/nologin "$run_user"
	fi
}

# Can the owner reach (search) directory $1?
owner_can_traverse() {
	as_owner test -x "$1" 2>/dev/null
}

# Absolute path of DIR without resolving DIR itself (it may be our symlink).
abs_dir() {
	local parent
	parent=$(realpath -m -- "$(dirname -- "$1")")
	echo "${parent%/}/$(basename -- "$1")"
}

port_busy() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

check_port() {
	if ! [[ $1 =~ ^[0-9]{1,5}$ ]] || (($1 < 1 || $1 > 65535)); then
		die "bad port: $1"
	fi
}

# Write stdin to file $1, owned by the cluster's owner.
write_owned() {
	cat >"$1"
	is_root && chown "$run_user:" "$1"
	return 0
}

# Single-quote $1 for postgresql.conf.
conf_quote() {
	printf "'%s'" "${1//\'/\'\'}"
}

# Prepare the cluster directory and set $real to where its files live.
prepare_dir() {
	local link=$1 parent sha
	parent=$(dirname -- "$link")
	if [[ -L $link ]]; then
		real=$(readlink -f -- "$link")
		[[ -d $real ]] || die "$link points to $real, which is missing; remove the link"
		return
	fi
	real=$link
	mkdir -p -- "$parent"
	if is_root && [[ ! -e $link/data/PG_VERSION ]] && ! owner_can_traverse "$parent"; then
		if [[ -d $link ]]; then
			rmdir -- "$link" 2>/dev/null ||
				die "$link is not empty and user $run_user cannot reach it; use a directory it can traverse"
		fi
		sha=$(printf '%s' "$link" | sha1sum | cut -c1-40)
		real=$run_home/clusters/$sha
		mkdir -p "$run_home/clusters"
		chown "$run_user:" "$run_home" "$run_home/clusters"
		chmod 0700 "$run_home/clusters"
		info "user $run_user cannot reach $parent: cluster files live in $real, $link links there"
		ln -s -- "$real" "$link"
	fi
	mkdir -p -- "$real"
	if is_root; then
		chown "$run_user:" "$real"
		owner_can_traverse "$real" || die "user $run_user cannot reach $real"
	fi
	chmod 0700 "$real"
}

is_running() {
	[[ -f $real/data/PG_VERSION ]] && as_owner "$bindir/pg_ctl" status -D "$real/data" >/dev/null 2>&1
}

# Port of the running server, from postmaster.pid (line 4).
running_port() {
	sed -n '4p' "$real/data/postmaster.pid" 2>/dev/null || true
}

cmd_start() {
	local port=$1 fast=$2
	check_port "$port"
	is_root && ensure_run_user
	prepare_dir "$dir"

	if [[ ! -f $real/data/PG_VERSION ]]; then
		info "creating a development cluster in $dir (trust authentication on 127.0.0.1: not for production)"
		write_owned "$real/$marker" <<-EOT
			A development PostgreSQL cluster made by scripts/pg.sh: trust authentication,
			superuser "postgres", listening on 127.0.0.1 only. Not for production data.
		EOT
		if ! as_owner "$bindir/initdb" -D "$real/data" -A trust -U postgres \
			--no-sync -E UTF8 --no-locale >"$real/initdb.log" 2>&1; then
			cat "$real/initdb.log" >&2
			die "initdb failed in $real/data"
		fi
		rm -f -- "$real/initdb.log"
		# Per-start settings (port, socket, durability) go in an included file
		# so paths need no shell quoting and each start may change them.
		printf "\ninclude_if_exists = 'parley-run.conf'\n" >>"$real/data/postgresql.conf"
	fi

	if is_running; then
		local have
		have=$(running_port)
		[[ $have == "$port" ]] ||
			die "the cluster in $dir already runs on port $have, not $port (scripts/pg.sh stop $dir)"
		info "PostgreSQL already running on 127.0.0.1:$port ($dir)"
		return 0
	fi
	if port_busy "$port"; then
		echo "parley: port $port on 127.0.0.1 is busy" >&2
		exit 3
	fi

	local socket=$real/socket
	# A unix socket path is limited to 107 bytes.
	((${#socket} + 16 <= 107)) || die "socket path too long ($socket/.s.PGSQL.$port); use a shorter DIR"
	mkdir -p -- "$socket"
	is_root && chown "$run_user:" "$socket"
	chmod 0700 "$socket"

	{
		echo "# Written by scripts/pg.sh at each start; edits are lost."
		echo "listen_addresses = '127.0.0.1'"
		echo "port = $port"
		echo "unix_socket_directories = $(conf_quote "$socket")"
		echo "unix_socket_permissions = 0700"
		if [[ $fast == yes ]]; then
			echo "# --fast: a throwaway test cluster; a crash may lose or corrupt data."
			echo "fsync = off"
			echo "synchronous_commit = off"
			echo "full_page_writes = off"
		fi
	} | write_owned "$real/data/parley-run.conf"

	if ! as_owner "$bindir/pg_ctl" start -w -t 60 -D "$real/data" \
		-l "$real/postgres.log" >/dev/null; then
		tail -n 20 "$real/postgres.log" >&2 || true
		if grep -q 'Address already in use' "$real/postgres.log" 2>/dev/null; then
			echo "parley: port $port on 127.0.0.1 is busy" >&2
			exit 3
		fi
		die "PostgreSQL did not start (log: $dir/postgres.log)"
	fi
	local note=
	[[ $fast == yes ]] && note=", --fast"
	info "PostgreSQL running on 127.0.0.1:$port ($dir$note)"
}

cmd_stop() {
	[[ -e $dir ]] || { info "no cluster in $dir"; return 0; }
	prepare_existing
	if is_running; then
		as_owner "$bindir/pg_ctl" stop -w -t 60 -m fast -D "$real/data" >/dev/null
		info "PostgreSQL stopped ($dir)"
	else
		info "PostgreSQL not running ($dir)"
	fi
}

cmd_status() {
	[[ -e $dir ]] || { info "no cluster in $dir"; exit 3; }
	prepare_existing
	if is_running; then
		info "PostgreSQL running on 127.0.0.1:$(running_port) ($dir)"
	else
		info "PostgreSQL not running ($dir)"
		exit 3
	fi
}

cmd_destroy() {
	[[ -e $dir || -L $dir ]] || return 0
	prepare_existing
	if [[ -d $real ]] && [[ -n $(ls -A -- "$real") ]] && [[ ! -f $real/$marker ]]; then
		die "$dir does not look like a cluster made by scripts/pg.sh; not deleting it"
	fi
	if is_running; then
		as_owner "$bindir/pg_ctl" stop -w -t 60 -m immediate -D "$real/data" >/dev/null
	fi
	rm -rf -- "$real"
	if [[ -L $dir ]]; then
		rm -f -- "$dir"
	fi
	info "PostgreSQL cluster removed ($dir)"
}

# For commands on an existing cluster: where do its files live?
prepare_existing() {
	if [[ -L $dir ]]; then
		real=$(readlink -f -- "$dir")
	else
		real=$dir
	fi
}

main() {
	local fast=no args=()
	for a in "$@"; do
		case "$a" in
			--fast) fast=yes ;;
			-h | --help) usage ;;
			-*) usage ;;
			*) args+=("$a") ;;
		esac
	done
	((${#args[@]} >= 1)) || usage
	local cmd=${args[0]}
	bindir=$(find_bindir)
	if [[ $cmd == bindir ]]; then
		echo "$bindir"
		return 0
	fi
	((${#args[@]} >= 2)) || usage
	dir=$(abs_dir "${args[1]}")
	local port=${args[2]:-}
	case "$cmd" in
		start)
			[[ -n $port ]] || usage
			cmd_start "$port" "$fast"
			;;
		stop) cmd_stop ;;
		status) cmd_status ;;
		destroy) cmd_destroy ;;
		url)
			[[ -n $port ]] || usage
			check_port "$port"
			echo "host=127.0.0.1 port=$port user=postgres dbname=${args[3]:-postgres}"
			;;
		*) usage ;;
	esac
}

real=
dir=
bindir=
main "$@"
