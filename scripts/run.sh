#!/usr/bin/env bash
# Run Parley on this machine with a demo configuration:
#   install missing packages, build, start a private PostgreSQL in .parley/pg
#   (kept across runs), write .parley/demo.json with one webhook channel
#   "demo", print a curl line that sends it a signed message, then run parleyd
#   in the foreground. Ctrl-C stops parleyd and the database.
#
# Environment: PARLEY_PORT (HTTP, default 8080), PARLEY_PG_PORT (PostgreSQL,
# default 55432).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
state=$root/.parley
http_port=${PARLEY_PORT:-8080}
pg_port=${PARLEY_PG_PORT:-55432}

# A JSON string literal for $1 (paths may hold quotes or backslashes).
json_str() {
	local s=$1
	s=${s//\\/\\\\}
	s=${s//\"/\\\"}
	printf '"%s"' "$s"
}

"$root/scripts/deps.sh"
"$root/scripts/build.sh"

mkdir -p "$state"
pg_started=no
# shellcheck disable=SC2317  # called from the EXIT trap
stop_database() {
	if [[ $pg_started == yes ]]; then
		"$root/scripts/pg.sh" stop "$state/pg" || true
		pg_started=no
	fi
}
trap stop_database EXIT
trap 'exit 130' INT TERM

"$root/scripts/pg.sh" start "$state/pg" "$pg_port"
pg_started=yes
bindir=$("$root/scripts/pg.sh" bindir)
admin_dsn=$("$root/scripts/pg.sh" url "$state/pg" "$pg_port" postgres)
dsn=$("$root/scripts/pg.sh" url "$state/pg" "$pg_port" parley)
if [[ -z $("$bindir/psql" -X -q -t -A "$admin_dsn" -c "SELECT 1 FROM pg_database WHERE datname = 'parley'") ]]; then
	"$bindir/psql" -X -q -v ON_ERROR_STOP=1 "$admin_dsn" -c 'CREATE DATABASE parley'
	echo "parley: created database parley"
fi

secret_file=$state/demo-secret
if [[ ! -s $secret_file ]]; then
	(umask 077 && openssl rand -hex 24 >"$secret_file")
	echo "parley: generated the demo channel's secret in .parley/demo-secret"
fi
chmod 600 "$secret_file"

config=$state/demo.json
cat >"$config" <<EOF
{
  "listen": "127.0.0.1:$http_port",
  "public_url": "http://127.0.0.1:$http_port",
  "database": { "dsn": $(json_str "$dsn") },
  "plugin_dir": $(json_str "$root/build/plugin-dir"),
  "log": { "level": "info", "format": "text" },
  "channels": [
    {
      "name": "demo",
      "plugin": "webhook",
      "config": { "secret": $(json_str "\$file:$secret_file") }
    }
  ]
}
EOF
"$root/build/parleyd" -c "$config" --check-config

# A signed test message. Only the signature is printed, never the secret.
body='{"id":"demo-'$(date +%s)'","author":{"id":"visitor-1","name":"Demo Visitor"},"text":"Hello from the demo","visibility":"private"}'
signature=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$(cat "$secret_file")" | awk '{print $NF}')

cat <<EOF

parley: ready. In another terminal, send the demo channel a signed message:

  curl -sS -X POST http://127.0.0.1:$http_port/webhooks/demo -H 'Content-Type: application/json' -H 'X-Parley-Signature: sha256=$signature' --data-binary '$body'

(sending it twice is a replay: answered, stored once) and look at what was stored:

  psql '$dsn' -c 'SELECT id, external_id, event_type, received_at FROM inbound_event ORDER BY id DESC LIMIT 5'

parley: starting parleyd on http://127.0.0.1:$http_port (Ctrl-C stops it and the database)
EOF

rc=0
"$root/build/parleyd" -c "$config" || rc=$?
exit "$rc"
