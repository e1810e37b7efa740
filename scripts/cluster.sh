#!/usr/bin/env bash
# The scaled-out deployment on one machine without Docker: PostgreSQL, RabbitMQ, several server
# replicas (daphne) on the same database, secrets and message broker, and nginx in front of them.
#
#   scripts/cluster.sh start     # prints the proxy's URL on stdout; progress goes to stderr
#   scripts/cluster.sh status    # exit 0 when every process runs
#   scripts/cluster.sh stop      # stops what start started, by process id
#   scripts/cluster.sh replica replica-1   # starts a replica that stopped again, on its port
#
# Services: with V6_DATABASE_URL (PostgreSQL) and V6_RABBITMQ_URI set, those are used; a missing one is
# started with scripts/services-start.sh (as root) and stopped again by `stop`.
# Options (environment):
#   V6_CLUSTER_DIR       state folder: pid files, logs, nginx config, generated secrets (.cluster/)
#   V6_CLUSTER_PORT      port of the proxy on 127.0.0.1 (7601)
#   V6_CLUSTER_REPLICAS  number of server replicas (2); each on a free loopback port
#   V6_SECRET_KEY, V6_JWT_SECRET_KEY  shared by every replica; generated once into the state folder
#   any other V6_ variable is passed on to the replicas (V6_LOG_FORMAT, V6_METRICS, ...)
# nginx is installed with apt-get when missing (as root); it runs as a plain process with its own
# config and pid file in the state folder, listening on loopback only.
set -euo pipefail
shopt -s inherit_errexit

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=$(realpath -m "${V6_CLUSTER_DIR:-$ROOT/.cluster}")
PROXY_PORT=${V6_CLUSTER_PORT:-7601}
REPLICAS=${V6_CLUSTER_REPLICAS:-2}
PYTHON=$ROOT/.venv/bin/python
STARTUP_TIMEOUT=${V6_CLUSTER_STARTUP_TIMEOUT:-60}

log() { echo "cluster: $*" >&2; }
die() { log "$*"; exit 1; }
# A process that exited but was not reaped yet (a zombie) is not alive.
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
pid_of() { cat "$STATE/$1.pid" 2>/dev/null || true; }

# Stop process $2 (named $1): TERM, then KILL after $3 seconds.
stop_pid() {
    local name=$1 pid=$2 tries=$(($3 * 10))
    alive "$pid" || return 0
    kill "$pid" 2>/dev/null || true
    while alive "$pid" && [ $tries -gt 0 ]; do sleep 0.1; tries=$((tries - 1)); done
    if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
    log "$name stopped"
}

replica_names() { for ((i = 1; i <= REPLICAS; i++)); do echo "replica-$i"; done; }

cmd_stop() {
    [ -f "$STATE/cluster.env" ] || { log "nothing to stop"; return 0; }
    # shellcheck source=/dev/null
    . "$STATE/cluster.env"
    stop_pid nginx "$(pid_of nginx)" 10
    for name in $REPLICA_NAMES; do stop_pid "$name" "$(pid_of "$name")" 15; done
    rm -f "$STATE"/*.pid
    if [ -n "${STARTED_SERVICES:-}" ]; then
        V6_SERVICES_DIR=$STATE/services "$ROOT/scripts/services-stop.sh"
    fi
    rm -f "$STATE/cluster.env" "$STATE/replica.env"
}

cmd_status() {
    [ -f "$STATE/cluster.env" ] || { echo "not running"; return 1; }
    # shellcheck source=/dev/null
    . "$STATE/cluster.env"
    local down=0 name pid
    for name in nginx $REPLICA_NAMES; do
        pid=$(pid_of "$name")
        if alive "$pid"; then echo "$name: running (pid $pid)"; else echo "$name: not running"; down=1; fi
    done
    echo "proxy: $URL"
    echo "replicas: $REPLICA_URLS"
    return $down
}

free_port() {
    "$PYTHON" "$ROOT/scripts/free_port.py"
}

# Wait until $2 answers HTTP (any status) or process $3 exits.
wait_http() {
    local name=$1 url=$2 pid=$3 deadline=$((SECONDS + STARTUP_TIMEOUT))
    until "$PYTHON" - "$url" 2>/dev/null <<'PY'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass
PY
    do
        alive "$pid" || die "$name exited; see its log in $STATE"
        [ $SECONDS -lt $deadline ] || die "$name did not answer at $url within ${STARTUP_TIMEOUT}s"
        sleep 0.2
    done
}

install_nginx() {
    command -v nginx >/dev/null && return 0
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || die "nginx is needed: apt-get install nginx"
    log "installing nginx"
    # Keep the package from starting its own default site (port 80) on machines with init scripts.
    local guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        guard=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$guard"
        chmod 755 "$guard"
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends nginx >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx >/dev/null; } ||
        { [ -z "$guard" ] || rm -f "$guard"; die "could not install nginx"; }
    [ -z "$guard" ] || rm -f "$guard"
}

secret() {
    local name=$1 file=$STATE/secrets/$1
    if [ -n "${!name:-}" ]; then echo "${!name}"; return; fi
    if [ ! -s "$file" ]; then
        (umask 077 && mkdir -p "$STATE/secrets" && "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(48))' >"$file")
    fi
    cat "$file"
}

write_nginx_conf() {
    local upstream="" port
    # max_fails=0: see scripts/proxy/docker.conf.
    for port in "$@"; do upstream+="        server 127.0.0.1:$port max_fails=0;"$'\n'; done
    mkdir -p "$STATE/nginx"
    cat >"$STATE/nginx.conf" <<EOF
# Generated by scripts/cluster.sh; the routes are in scripts/proxy/locations.conf.
worker_processes 1;
pid $STATE/nginx.pid;
error_log $STATE/nginx-error.log warn;
$([ "$(id -u)" = 0 ] && echo "user root;  # the state folder may be private to root")
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $STATE/nginx/body;
    proxy_temp_path $STATE/nginx/proxy;
    fastcgi_temp_path $STATE/nginx/fastcgi;
    uwsgi_temp_path $STATE/nginx/uwsgi;
    scgi_temp_path $STATE/nginx/scgi;
    map \$http_upgrade \$connection_upgrade {
        default upgrade;
        '' close;
    }
    upstream vantage6 {
$upstream        keepalive 32;
        keepalive_timeout 2s;  # see scripts/proxy/docker.conf
    }
    server {
        listen 127.0.0.1:$PROXY_PORT;
        include $ROOT/scripts/proxy/locations.conf;
    }
}
EOF
}

# Start replica $1 on port $2: one daphne process (vantage6.serve: stops gracefully on SIGTERM).
start_replica() {
    # nginx connects from loopback: its X-Forwarded-For names the client (the failed-login limit).
    (cd "$ROOT" && V6_HOST=127.0.0.1 V6_PORT=$2 V6_WORKERS=1 V6_TRUSTED_PROXIES=${V6_TRUSTED_PROXIES:-127.0.0.1} \
        exec setsid "$PYTHON" -m vantage6.serve \
        >>"$STATE/$1.log" 2>&1) &
    echo $! >"$STATE/$1.pid"
}

# Start a replica that stopped (or was stopped) again, on its port, with the settings of `start`.
cmd_replica() {
    local name=${1:-} url port i=0
    [ -f "$STATE/cluster.env" ] || die "not running"
    # shellcheck source=/dev/null
    . "$STATE/cluster.env"
    # shellcheck source=/dev/null
    . "$STATE/replica.env"
    for url in $REPLICA_URLS; do
        i=$((i + 1))
        [ "replica-$i" = "$name" ] || continue
        alive "$(pid_of "$name")" && die "$name is running"
        port=${url##*:}
        start_replica "$name" "$port"
        wait_http "$name" "$url${V6_API_PATH:-/api}/health" "$(pid_of "$name")"
        log "$name on $url again"
        return 0
    done
    die "no replica named '$name'"
}

cmd_start() {
    [[ $REPLICAS =~ ^[1-9][0-9]*$ ]] || die "V6_CLUSTER_REPLICAS must be a positive number, got '$REPLICAS'"
    [[ $PROXY_PORT =~ ^[0-9]+$ ]] && [ "$PROXY_PORT" -le 65535 ] || die "not a port number: '$PROXY_PORT'"
    mkdir -p "$STATE"
    if [ -f "$STATE/cluster.env" ]; then
        log "stopping the previous start"
        cmd_stop
    fi
    [ -x "$ROOT/.venv/bin/daphne" ] || make -s -C "$ROOT" .venv/.installed >&2
    install_nginx

    local started=""
    local wanted=()
    [[ ${V6_DATABASE_URL:-} == postgres* ]] || {
        [ -z "${V6_DATABASE_URL:-}" ] || die "the replicas must share PostgreSQL; V6_DATABASE_URL is not postgres://"
        wanted+=(postgres)
    }
    [ -n "${V6_RABBITMQ_URI:-}" ] || wanted+=(rabbitmq)
    if [ ${#wanted[@]} -gt 0 ]; then
        log "starting ${wanted[*]} with scripts/services-start.sh"
        local exports
        exports=$(V6_SERVICES_DIR=$STATE/services "$ROOT/scripts/services-start.sh" "${wanted[@]}")
        eval "$exports"
        started=${wanted[*]}
    fi

    export V6_DATABASE_URL V6_RABBITMQ_URI
    V6_SECRET_KEY=$(secret V6_SECRET_KEY)
    V6_JWT_SECRET_KEY=$(secret V6_JWT_SECRET_KEY)
    export V6_SECRET_KEY V6_JWT_SECRET_KEY
    export V6_DATA_DIR=${V6_DATA_DIR:-$STATE/data}
    local url="http://127.0.0.1:$PROXY_PORT"
    export V6_SERVER_URL=${V6_SERVER_URL:-$url${V6_API_PATH:-/api}}
    # The replicas' settings, for `replica` to start one again the same way (secrets: owner only).
    (umask 077 && export -p | grep '^declare -x V6_' >"$STATE/replica.env")

    local names ports=() urls=() name port pid
    names=$(replica_names | tr '\n' ' ')
    {
        printf 'REPLICA_NAMES=%q\nURL=%q\nSTARTED_SERVICES=%q\n' "$names" "$url" "$started"
    } >"$STATE/cluster.env"
    trap 'status=$?; if [ $status != 0 ]; then log "start failed; stopping what was started"; cmd_stop; fi' EXIT

    log "migrating the database and creating root on the first start"
    (cd "$ROOT" && V6_HOST=127.0.0.1 V6_PORT=$PROXY_PORT "$PYTHON" manage.py bootstrap >&2)

    for name in $names; do
        port=$(free_port)
        start_replica "$name" "$port"
        ports+=("$port")
        urls+=("http://127.0.0.1:$port")
    done
    printf 'REPLICA_URLS=%q\n' "${urls[*]}" >>"$STATE/cluster.env"
    local i=0
    for name in $names; do
        wait_http "$name" "${urls[$i]}${V6_API_PATH:-/api}/health" "$(pid_of "$name")"
        log "$name on ${urls[$i]} (log $STATE/$name.log)"
        i=$((i + 1))
    done

    write_nginx_conf "${ports[@]}"
    nginx -t -q -e "$STATE/nginx-error.log" -c "$STATE/nginx.conf" -p "$STATE" >&2 || die "nginx config refused"
    nginx -e "$STATE/nginx-error.log" -c "$STATE/nginx.conf" -p "$STATE" -g "daemon on;"
    local deadline=$((SECONDS + 10))
    until [ -s "$STATE/nginx.pid" ]; do
        [ $SECONDS -lt $deadline ] || die "nginx did not start; see $STATE/nginx-error.log"
        sleep 0.1
    done
    wait_http nginx "$url${V6_API_PATH:-/api}/health" "$(pid_of nginx)"
    trap - EXIT
    log "proxy on $url in front of ${urls[*]}"
    echo "$url"
}

case ${1:-} in
    start) cmd_start ;;
    replica) cmd_replica "${2:-}" ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|status|replica NAME" >&2; exit 2 ;;
esac
