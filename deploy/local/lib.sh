# Shared by up.sh and down.sh: where the project-local servers live and how
# the configured URLs break into host, port, user and database.
# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables are used by the scripts that source this file

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DATA="$ROOT/.data"
PGDATA_DIR="$DATA/pg"
PGRUN_DIR="$DATA/run"
REDIS_DIR="$DATA/redis"
REDIS_PID="$DATA/redis.pid"
REDIS_LOG="$DATA/redis.log"
COMPOSE_MARK="$DATA/compose.started"
COMPOSE_FILE="$ROOT/deploy/compose.yaml"

DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/bazaar?sslmode=disable}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}

say() { printf 'up: %s\n' "$*"; }
die() {
	printf 'up: %s\n' "$*" >&2
	exit 1
}

# parse_url URL sets U_SCHEME U_USER U_PASS U_HOST U_PORT U_PATH U_QUERY.
parse_url() {
	local re='^([a-z]+)://(([^:@/]*)(:([^@/]*))?@)?(\[[^]]*\]|[^:/?]*)(:([0-9]+))?(/([^?]*))?(\?(.*))?$'
	[[ $1 =~ $re ]] || die "cannot read URL ${1%%@*}@...: expected scheme://[user[:password]@]host[:port][/path]"
	U_SCHEME=${BASH_REMATCH[1]}
	U_USER=${BASH_REMATCH[3]}
	U_PASS=${BASH_REMATCH[5]}
	U_HOST=${BASH_REMATCH[6]}
	U_PORT=${BASH_REMATCH[8]}
	U_PATH=${BASH_REMATCH[10]}
	U_QUERY=${BASH_REMATCH[12]}
	U_HOST=${U_HOST#[}
	U_HOST=${U_HOST%]}
	U_HOST=${U_HOST:-127.0.0.1}
}

parse_url "$DATABASE_URL"
PG_SCHEME=$U_SCHEME
PG_USER=${U_USER:-postgres}
PG_PASS=$U_PASS
PG_HOST=$U_HOST
PG_PORT=${U_PORT:-5432}
PG_DB=${U_PATH:-$PG_USER}
PG_QUERY=$U_QUERY

parse_url "$REDIS_URL"
REDIS_SCHEME=$U_SCHEME
REDIS_HOST=$U_HOST
REDIS_PORT=${U_PORT:-6379}
REDIS_PASS=$U_PASS

is_local_host() {
	case $1 in 127.* | localhost | ::1) return 0 ;; esac
	return 1
}

# as_pg_owner runs a PostgreSQL server program as an account the server
# accepts: PostgreSQL refuses to run as root, so root hands it to "postgres".
as_pg_owner() {
	if [[ $EUID -eq 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# pg_bin NAME prints the path of a server program of the newest installed
# PostgreSQL, which Debian keeps off PATH.
pg_bin() {
	local f
	f=$(ls -d /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1) || true
	[[ -n $f && -x $f ]] && printf '%s\n' "$f"
}

compose() {
	if docker compose version >/dev/null 2>&1; then
		docker compose -f "$COMPOSE_FILE" "$@"
	else
		docker-compose -f "$COMPOSE_FILE" "$@"
	fi
}
