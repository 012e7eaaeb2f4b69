#!/usr/bin/env bash
# Stops the PostgreSQL and Redis that deploy/local/up.sh started (the servers
# running from .data/, or the compose services it brought up) and nothing
# else. The data stays in .data/ for the next "make up"; delete the folder to
# start afresh.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

say() { printf 'down: %s\n' "$*"; }

stopped=""
if [[ -s $PGDATA_DIR/postmaster.pid ]]; then
	pg_ctl=$(pg_bin pg_ctl)
	if [[ -n $pg_ctl ]] && as_pg_owner "$pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
		say "stopping PostgreSQL (.data/pg)"
		as_pg_owner "$pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 60 stop >/dev/null
		stopped=1
	fi
fi

if [[ -s $REDIS_PID ]]; then
	pid=$(cat "$REDIS_PID")
	# The pid file may be stale after a reboot: only signal a redis-server.
	if kill -0 "$pid" 2>/dev/null && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == redis-server* ]]; then
		say "stopping Redis (.data/redis)"
		kill -TERM "$pid"
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && die "Redis (pid $pid) did not stop within 10s"
		stopped=1
	fi
	rm -f "$REDIS_PID"
fi

if [[ -s $COMPOSE_MARK ]]; then
	mapfile -t services < <(sort -u "$COMPOSE_MARK")
	say "stopping ${services[*]} (docker compose)"
	compose stop "${services[@]}" >/dev/null
	rm -f "$COMPOSE_MARK"
	stopped=1
fi

[[ -n $stopped ]] || say "nothing to stop: make up started no server"
