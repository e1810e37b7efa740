#!/usr/bin/env bash
# Start PostgreSQL and RabbitMQ for this checkout: loopback only, no systemd, data under .services/.
#
#   eval "$(scripts/services-start.sh)"          # both; or name them: postgres, rabbitmq
#   scripts/services-stop.sh                     # stops what was started
#
# Needs root (the servers run as the users postgres and rabbitmq) and the Debian packages
# postgresql and rabbitmq-server. Prints the V6_ exports on stdout; progress goes to stderr.
# A previous start of this checkout is stopped first; busy default ports are replaced by free ones.
# Options (environment): V6_SERVICES_DIR (default .services/), V6_PG_PORT (5432), V6_RABBITMQ_PORT (5672).
set -euo pipefail
shopt -s inherit_errexit

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SVC=${V6_SERVICES_DIR:-$ROOT/.services}
STATE=$SVC/state.env
SERVICES=("$@")
[ ${#SERVICES[@]} -gt 0 ] || SERVICES=(postgres rabbitmq)

log() { echo "services: $*" >&2; }
die() { log "$*"; exit 1; }
wants() { [[ " ${SERVICES[*]} " == *" $1 "* ]]; }

[ "$(id -u)" = 0 ] || die "run as root (PostgreSQL and RabbitMQ run as their own users)"
for port in "${V6_PG_PORT:-5432}" "${V6_RABBITMQ_PORT:-5672}"; do
    [[ $port =~ ^[0-9]+$ ]] && [ "$port" -le 65535 ] || die "not a port number: '$port'"
done
for service in "${SERVICES[@]}"; do
    case $service in postgres | rabbitmq) ;; *) die "unknown service '$service' (postgres, rabbitmq)" ;; esac
done

if [ -f "$STATE" ]; then
    log "stopping the services of a previous start"
    "$ROOT/scripts/services-stop.sh"
fi

# A free TCP port on 127.0.0.1 outside the ephemeral range: the preferred one when it is free.
TAKEN=""
free_port() {
    local port
    # $TAKEN unquoted: one argument per taken port.
    port=$(python3 "$ROOT/scripts/free_port.py" "$1" $TAKEN)
    TAKEN="$TAKEN $port"
    echo "$port"
}

# The servers' users must reach the data folder; a checkout under a private home (e.g. /root) is not
# reachable, so the data then lives in a folder of its own under /var/tmp.
mkdir -p "$SVC"
DATA=$SVC
if ! runuser -u postgres -- test -x "$SVC" 2>/dev/null || ! runuser -u rabbitmq -- test -x "$SVC" 2>/dev/null; then
    DATA=/var/tmp/vantage6-services-$(echo -n "$SVC" | md5sum | cut -c1-12)
    log "$SVC is not reachable by the service users; keeping the data in $DATA"
fi
mkdir -p "$DATA"
chmod 755 "$DATA"
echo "DATA=$DATA" >"$STATE"

stop_on_failure() {
    local status=$?
    [ "$status" = 0 ] && return
    log "start-up failed; stopping what was started"
    "$ROOT/scripts/services-stop.sh" || true
    exit "$status"
}
trap stop_on_failure EXIT

EXPORTS=()

if wants postgres; then
    PGBIN=/usr/lib/postgresql/15/bin
    [ -x "$PGBIN/pg_ctl" ] || PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
    [ -n "$PGBIN" ] && [ -x "$PGBIN/pg_ctl" ] || die "PostgreSQL is not installed (apt-get install postgresql)"
    PG_DATA=$DATA/pgdata
    PG_SOCK=$DATA/pgsock
    PG_PORT=$(free_port "${V6_PG_PORT:-5432}")
    version=$(basename "$(dirname "$PGBIN")")
    if [ ! -f "$PG_DATA/PG_VERSION" ] || [ "$(cat "$PG_DATA/PG_VERSION")" != "$version" ]; then
        rm -rf "$PG_DATA"
        mkdir -p "$PG_DATA"
        chown postgres:postgres "$PG_DATA"
        chmod 700 "$PG_DATA"
        runuser -u postgres -- "$PGBIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 \
            --locale=C.UTF-8 >/dev/null
    fi
    # A Unix socket path may not exceed 107 bytes: a deep checkout gets a short folder instead.
    [ ${#PG_SOCK} -le 80 ] || PG_SOCK=/tmp/vantage6-pgsock-$(echo -n "$PG_DATA" | md5sum | cut -c1-12)
    mkdir -p "$PG_SOCK"
    chown postgres:postgres "$PG_SOCK"
    printf 'PGBIN=%q\nPG_DATA=%q\nPG_PORT=%q\n' "$PGBIN" "$PG_DATA" "$PG_PORT" >>"$STATE"
    # fsync off: throw-away development and CI data, started for speed.
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_SOCK -c fsync=off -c full_page_writes=off" \
        >/dev/null
    psql() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres "$@"; }
    # CREATEDB: the test runner creates its own test database.
    [ "$(psql -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'vantage6'")" = 1 ] ||
        psql -c "CREATE ROLE vantage6 LOGIN CREATEDB PASSWORD 'vantage6'"
    [ "$(psql -tAc "SELECT 1 FROM pg_database WHERE datname = 'vantage6'")" = 1 ] ||
        psql -c "CREATE DATABASE vantage6 OWNER vantage6"
    log "PostgreSQL $version on 127.0.0.1:$PG_PORT (data $PG_DATA)"
    EXPORTS+=("export V6_DATABASE_URL=postgres://vantage6:vantage6@127.0.0.1:$PG_PORT/vantage6")
fi

if wants rabbitmq; then
    command -v rabbitmq-server >/dev/null || die "RabbitMQ is not installed (apt-get install rabbitmq-server)"
    RMQ_BASE=$DATA/rabbitmq
    mkdir -p "$RMQ_BASE/mnesia" "$RMQ_BASE/log"
    echo "[]." >"$RMQ_BASE/enabled_plugins"
    chown -R rabbitmq:rabbitmq "$RMQ_BASE"
    RMQ_PORT=$(free_port "${V6_RABBITMQ_PORT:-5672}")
    RMQ_DIST_PORT=$(free_port 25672)
    EPMD_PORT=$(free_port 4369)
    printf 'RMQ_BASE=%q\nRMQ_PORT=%q\nEPMD_PORT=%q\n' "$RMQ_BASE" "$RMQ_PORT" "$EPMD_PORT" >>"$STATE"
    # The /usr/sbin wrappers re-run these as user rabbitmq and keep this environment.
    export RABBITMQ_NODENAME=rabbit@localhost ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT=$EPMD_PORT
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$RMQ_PORT RABBITMQ_DIST_PORT=$RMQ_DIST_PORT
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export RABBITMQ_MNESIA_BASE=$RMQ_BASE/mnesia RABBITMQ_LOG_BASE=$RMQ_BASE/log
    export RABBITMQ_PID_FILE=$RMQ_BASE/rabbit.pid RABBITMQ_ENABLED_PLUGINS_FILE=$RMQ_BASE/enabled_plugins
    rabbitmq-server -detached
    # `wait <pidfile>` returns once the broker is up (await_startup gives up if epmd is not ready yet).
    if ! rabbitmqctl -q wait "$RABBITMQ_PID_FILE" --timeout 120 >/dev/null; then
        log "RabbitMQ did not start; the end of its logs:"
        tail -n 40 "$RMQ_BASE"/log/*.log >&2 || true
        exit 1
    fi
    epmd_pid=$(ss -Hltnp "sport = :$EPMD_PORT" | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2 || true)
    echo "EPMD_PID=${epmd_pid}" >>"$STATE"
    log "RabbitMQ on 127.0.0.1:$RMQ_PORT (epmd port $EPMD_PORT, data $RMQ_BASE)"
    EXPORTS+=("export V6_RABBITMQ_URI=amqp://guest:guest@127.0.0.1:$RMQ_PORT")
fi

trap - EXIT
printf '%s\n' "${EXPORTS[@]}"
