#!/usr/bin/env bash
# Stop the PostgreSQL and RabbitMQ that scripts/services-start.sh started for this checkout,
# each by its own stop command, falling back to its process id. Data stays in place.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SVC=${V6_SERVICES_DIR:-$ROOT/.services}
STATE=$SVC/state.env
log() { echo "services: $*" >&2; }

[ -f "$STATE" ] || { log "nothing to stop"; exit 0; }
# shellcheck source=/dev/null
. "$STATE"

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
# Wait up to $2 seconds for process $1 to exit; kill it if it has not.
reap() {
    local pid=$1 tries=$(($2 * 10))
    while alive "$pid" && [ $tries -gt 0 ]; do sleep 0.1; tries=$((tries - 1)); done
    if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
}

status=0
if [ -n "${PG_DATA:-}" ] && [ -f "$PG_DATA/postmaster.pid" ]; then
    pid=$(head -n1 "$PG_DATA/postmaster.pid")
    if alive "$pid"; then
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null || kill "$pid" 2>/dev/null || true
        reap "$pid" 10
        if alive "$pid"; then status=1; else log "PostgreSQL stopped"; fi
    fi
fi

if [ -n "${RMQ_BASE:-}" ]; then
    export RABBITMQ_NODENAME=rabbit@localhost ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT=$EPMD_PORT
    pid=$(cat "$RMQ_BASE/rabbit.pid" 2>/dev/null || true)
    if alive "$pid"; then
        rabbitmqctl -q shutdown >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
        reap "$pid" 20
        if alive "$pid"; then status=1; else log "RabbitMQ stopped"; fi
    fi
    rm -f "$RMQ_BASE/rabbit.pid"
    # epmd outlives the broker. Its port was free before the start, so whoever listens there is ours
    # (also when the start failed before it could note the process id).
    [ -n "${EPMD_PID:-}" ] || EPMD_PID=$(ss -Hltnp "sport = :$EPMD_PORT" | grep -o "pid=[0-9]*" | head -n1 | cut -d= -f2 || true)
    if alive "$EPMD_PID" && [ "$(ps -o comm= -p "$EPMD_PID")" = epmd ]; then
        kill "$EPMD_PID"
        reap "$EPMD_PID" 5
    fi
fi

rm -f "$STATE"
exit $status
