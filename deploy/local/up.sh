#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer at DATABASE_URL and REDIS_URL
# (defaults: postgres://postgres@127.0.0.1:5432/bazaar, redis://127.0.0.1:6379/0)
# and that the configured database exists.
#
# Servers that already answer are used as they are. For a local address that
# does not answer, in this order:
#   1. the distribution's packages (installed with apt-get when missing and
#      root or sudo is at hand) run as project-local servers with their data in
#      .data/, which "make down" stops again;
#   2. a Docker engine runs the postgres and redis services of deploy/compose.yaml;
#   3. otherwise it prints what to install and exits non-zero.
# Silent when there is nothing to do; one line per action otherwise.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# bazaar accepts only these schemes; anything else would have this script
# start or create a PostgreSQL the roles then refuse to use.
case $PG_SCHEME in postgres | postgresql) ;; *) die "DATABASE_URL: scheme \"$PG_SCHEME\" is not postgres or postgresql" ;; esac
case $REDIS_SCHEME in redis | rediss) ;; *) die "REDIS_URL: scheme \"$REDIS_SCHEME\" is not redis or rediss" ;; esac

pg_ready() {
	if command -v pg_isready >/dev/null 2>&1; then
		pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2
	else
		timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$PG_HOST" "$PG_PORT" 2>/dev/null
	fi
}

# redis_ready speaks RESP over bash's /dev/tcp so no client is needed; a
# server that wants a password answers NOAUTH, which still means it runs.
redis_ready() {
	timeout 3 bash -c '
		exec 3<>"/dev/tcp/$0/$1" || exit 1
		printf "PING\r\n" >&3
		IFS= read -r -t 2 reply <&3 || exit 1
		case $reply in "+PONG"* | "-NOAUTH"*) exit 0 ;; esac
		exit 1' "$REDIS_HOST" "$REDIS_PORT" 2>/dev/null
}

wait_for() {
	local what=$1 check=$2 i
	for ((i = 0; i < 120; i++)); do
		"$check" && return 0
		sleep 0.5
	done
	die "$what did not answer within 60s"
}

can_be_root() {
	[[ $EUID -eq 0 ]] && return 0
	command -v sudo >/dev/null 2>&1 || return 1
	# Without a terminal nobody can type a password, so only passwordless sudo counts.
	[[ -t 0 ]] || sudo -n true 2>/dev/null
}

as_root() {
	if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

is_debian() {
	[[ -r /etc/debian_version ]] && command -v apt-get >/dev/null 2>&1
}

apt_updated=""
apt_install() {
	mkdir -p "$DATA"
	local pkg
	for pkg in "$@"; do
		# A fresh image has no package lists at all; only then is an update needed.
		if [[ -z $apt_updated ]] && ! apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
			say "apt-get update"
			as_root apt-get update -qq >"$DATA/apt.log" 2>&1 || {
				tail -n 20 "$DATA/apt.log" >&2
				die "apt-get update failed (log: .data/apt.log)"
			}
			apt_updated=1
		fi
	done
	say "installing $* with apt-get"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >"$DATA/apt.log" 2>&1 || {
		tail -n 20 "$DATA/apt.log" >&2
		die "apt-get install $* failed (log: .data/apt.log)"
	}
}

install_postgres() {
	# Debian creates and starts a "main" cluster on 5432 with password
	# authentication when the server package is installed; it would take the
	# port the project's own server needs, so switch that off first.
	[[ -e /etc/postgresql-common/createcluster.conf ]] || apt_install postgresql-common
	if ! grep -Eq '^\s*create_main_cluster\s*=\s*false' /etc/postgresql-common/createcluster.conf; then
		say "setting create_main_cluster = false in /etc/postgresql-common/createcluster.conf"
		as_root sed -i -E 's/^#?\s*create_main_cluster\s*=.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
		grep -Eq '^\s*create_main_cluster' /etc/postgresql-common/createcluster.conf ||
			echo 'create_main_cluster = false' | as_root tee -a /etc/postgresql-common/createcluster.conf >/dev/null
	fi
	apt_install postgresql
}

start_local_postgres() {
	local initdb pg_ctl sock
	initdb=$(pg_bin initdb) || die "PostgreSQL server programs not found under /usr/lib/postgresql"
	pg_ctl=$(pg_bin pg_ctl)
	if [[ $EUID -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
		die "PostgreSQL will not run as root and there is no postgres account to run it as"
	fi
	mkdir -p "$DATA" "$PGDATA_DIR" "$PGRUN_DIR"
	chmod 700 "$PGDATA_DIR"
	if [[ $EUID -eq 0 ]]; then
		chown postgres: "$PGDATA_DIR" "$PGRUN_DIR"
		runuser -u postgres -- test -w "$PGDATA_DIR" ||
			die "the postgres account cannot reach $PGDATA_DIR (a parent folder is closed to it); move the checkout, or run PostgreSQL yourself and set DATABASE_URL"
	fi
	if [[ ! -s $PGDATA_DIR/PG_VERSION ]]; then
		say "initdb .data/pg"
		as_pg_owner "$initdb" -D "$PGDATA_DIR" --auth=trust -U "$PG_USER" -E UTF8 --no-locale >"$PGRUN_DIR/initdb.log" 2>&1 || {
			tail -n 20 "$PGRUN_DIR/initdb.log" >&2
			die "initdb failed (log: .data/run/initdb.log)"
		}
	fi
	if as_pg_owner "$pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
		die "the PostgreSQL of .data/pg runs but does not answer at $PG_HOST:$PG_PORT (port changed?); run make down, then make up"
	fi
	# A unix socket path is limited to 107 bytes; a deep checkout gets TCP only.
	sock=$PGRUN_DIR
	((${#sock} < 90)) || sock=""
	say "starting PostgreSQL on $PG_HOST:$PG_PORT (data in .data/pg, log .data/run/postgres.log)"
	as_pg_owner "$pg_ctl" -D "$PGDATA_DIR" -l "$PGRUN_DIR/postgres.log" -w -t 60 \
		-o "-p $PG_PORT -k '$sock' -c listen_addresses='$PG_HOST'" start >/dev/null || {
		tail -n 20 "$PGRUN_DIR/postgres.log" >&2
		die "PostgreSQL did not start (log: .data/run/postgres.log)"
	}
	wait_for PostgreSQL pg_ready
}

start_local_redis() {
	command -v redis-server >/dev/null 2>&1 || die "redis-server not found"
	mkdir -p "$REDIS_DIR"
	if [[ -s $REDIS_PID ]] && kill -0 "$(cat "$REDIS_PID")" 2>/dev/null; then
		die "the Redis of .data/redis runs but does not answer at $REDIS_HOST:$REDIS_PORT (port changed?); run make down, then make up"
	fi
	say "starting Redis on $REDIS_HOST:$REDIS_PORT (data in .data/redis, log .data/redis.log)"
	local args=(--daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT"
		--dir "$REDIS_DIR" --pidfile "$REDIS_PID" --logfile "$REDIS_LOG"
		--appendonly yes --save "")
	[[ -z $REDIS_PASS ]] || args+=(--requirepass "$REDIS_PASS")
	redis-server "${args[@]}" >/dev/null || die "redis-server did not start (log: .data/redis.log)"
	wait_for Redis redis_ready
}

start_compose() {
	local services=("$@")
	mkdir -p "$DATA"
	say "starting ${services[*]} with docker compose (deploy/compose.yaml)"
	BAZAAR_PG_PORT=$PG_PORT BAZAAR_REDIS_PORT=$REDIS_PORT compose up -d --wait "${services[@]}" >"$DATA/compose.log" 2>&1 || {
		tail -n 20 "$DATA/compose.log" >&2
		die "docker compose up failed (log: .data/compose.log)"
	}
	printf '%s\n' "${services[@]}" >>"$COMPOSE_MARK"
	[[ " ${services[*]} " != *" postgres "* ]] || wait_for PostgreSQL pg_ready
	[[ " ${services[*]} " != *" redis "* ]] || wait_for Redis redis_ready
}

ensure_database() {
	case $PG_DB in postgres | template0 | template1) return 0 ;; esac
	local sslmode="" psql=()
	[[ $PG_QUERY =~ (^|&)sslmode=([a-z-]+) ]] && sslmode=${BASH_REMATCH[2]}
	if command -v psql >/dev/null 2>&1; then
		psql=(env PGHOST="$PG_HOST" PGPORT="$PG_PORT" PGUSER="$PG_USER" PGPASSWORD="$PG_PASS"
			${sslmode:+PGSSLMODE="$sslmode"} PGCONNECT_TIMEOUT=5 psql -X -q -t -A -v ON_ERROR_STOP=1 -d postgres)
	elif [[ -s $COMPOSE_MARK ]] && grep -qx postgres "$COMPOSE_MARK"; then
		psql=(compose exec -T postgres psql -X -q -t -A -v ON_ERROR_STOP=1 -U "$PG_USER" -d postgres)
	else
		say "psql not found: cannot check that database $PG_DB exists (install postgresql-client)"
		return 0
	fi
	local out
	out=$("${psql[@]}" -v db="$PG_DB" <<<"SELECT 1 FROM pg_database WHERE datname = :'db'" 2>&1) ||
		die "cannot log in to PostgreSQL at $PG_HOST:$PG_PORT as $PG_USER: ${out//$'\n'/ }"
	[[ $out == 1 ]] && return 0
	say "creating database $PG_DB"
	out=$("${psql[@]}" -v db="$PG_DB" <<<'CREATE DATABASE :"db"' 2>&1) ||
		die "create database $PG_DB: ${out//$'\n'/ }"
}

explain_and_fail() {
	local missing=$1 pronoun=$2
	cat >&2 <<EOF
up: $missing, and this machine cannot start $pronoun. Any one of these will do:
  - Debian/Ubuntu: sudo apt-get install postgresql redis-server
      (or run "make up" as root or with sudo, and it installs them itself);
      make up then runs them from .data/ in this checkout.
  - Docker: start a Docker engine ("docker info" must work); make up then
      runs the postgres and redis services of deploy/compose.yaml.
  - Your own servers: set DATABASE_URL and REDIS_URL to them.
EOF
	exit 1
}

need_pg="" need_redis=""
pg_ready || need_pg=1
redis_ready || need_redis=1

if [[ -n $need_pg ]] && ! is_local_host "$PG_HOST"; then
	die "PostgreSQL does not answer at $PG_HOST:$PG_PORT (DATABASE_URL); start it there, or unset DATABASE_URL to use a local one"
fi
if [[ -n $need_redis ]] && ! is_local_host "$REDIS_HOST"; then
	die "Redis does not answer at $REDIS_HOST:$REDIS_PORT (REDIS_URL); start it there, or unset REDIS_URL to use a local one"
fi

if [[ -n $need_pg || -n $need_redis ]]; then
	have_pg="" have_redis=""
	[[ -n $(pg_bin initdb) ]] && have_pg=1
	command -v redis-server >/dev/null 2>&1 && have_redis=1
	installable=""
	is_debian && can_be_root && installable=1

	if { [[ -z $need_pg || -n $have_pg ]] && [[ -z $need_redis || -n $have_redis ]]; } || [[ -n $installable ]]; then
		if [[ -n $need_pg ]]; then
			[[ -n $have_pg ]] || install_postgres
			pg_ready || start_local_postgres
		fi
		if [[ -n $need_redis ]]; then
			if [[ -z $have_redis ]]; then
				apt_install redis-server
				# Debian's package starts its own service where it can; use it if it did.
				sleep 1
			fi
			redis_ready || start_local_redis
		fi
	elif docker info >/dev/null 2>&1; then
		services=()
		[[ -z $need_pg ]] || services+=(postgres)
		[[ -z $need_redis ]] || services+=(redis)
		start_compose "${services[@]}"
	else
		what=()
		[[ -z $need_pg ]] || what+=("PostgreSQL does not answer at $PG_HOST:$PG_PORT")
		[[ -z $need_redis ]] || what+=("Redis does not answer at $REDIS_HOST:$REDIS_PORT")
		if ((${#what[@]} == 2)); then
			explain_and_fail "${what[0]} and ${what[1]}" them
		fi
		explain_and_fail "${what[0]}" it
	fi
fi

ensure_database
