#!/usr/bin/env bash
# The reference server for the benchmark: vantage6-server 4.15.2 from the package index, on Python 3.10,
# started the way its production image starts it (uWSGI, gevent, one worker process), on loopback.
#
#   bench/setup_original.sh install     # venv + vantage6-server==4.15.2 + uwsgi (once, ~2 min)
#   bench/setup_original.sh start       # fresh database, config, uWSGI on 127.0.0.1:$ORIG_PORT
#   bench/setup_original.sh stop
#   bench/setup_original.sh status
#
# Environment: ORIG_PORT (7602), ORIG_DIR (bench/.original, gitignored: the venv), ORIG_STATE (the
# database, config, log and pid file of one server: ORIG_DIR by default, one per port offset in
# bench/api.py, so that runs beside each other keep apart), ORIG_DB_URI (a SQLite file in ORIG_STATE by default; give a postgresql:// URI to use PostgreSQL, psycopg2-binary is then
# installed), ORIG_PROCESSES (1: the upstream default), ORIG_KEEP_DB=1 to keep the data of a
# previous start, ORIG_EXTRA_CONFIG (lines added to its config.yaml, e.g. `two_factor_auth: true`),
# PYTHON310 (pyenv's 3.10.13).
# Root logs in as root/root (the upstream default password of a first start).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ORIG_DIR=${ORIG_DIR:-$HERE/.original}
ORIG_PORT=${ORIG_PORT:-7602}
ORIG_PROCESSES=${ORIG_PROCESSES:-1}
PYTHON310=${PYTHON310:-/root/.pyenv/versions/3.10.13/bin/python}
ORIG_STATE=${ORIG_STATE:-$ORIG_DIR}
VENV=$ORIG_DIR/venv
DB_FILE=$ORIG_STATE/data/original.sqlite
ORIG_DB_URI=${ORIG_DB_URI:-sqlite:///$DB_FILE}
PIDFILE=$ORIG_STATE/uwsgi.pid
LOG=$ORIG_STATE/uwsgi.log
# A fixed secret: tokens of one run stay valid after a restart of the server.
JWT_SECRET=${ORIG_JWT_SECRET:-bench-jwt-secret-0123456789abcdef0123456789abcdef}

install() {
    mkdir -p "$ORIG_DIR"
    if [[ ! -x $VENV/bin/python ]]; then
        "$PYTHON310" -m venv "$VENV"
        "$VENV/bin/pip" install -q --upgrade pip
    fi
    # vantage6.server imports vantage6.backend.common without declaring it; the upstream image
    # installs both. uwsgi is what that image runs; it builds from source (gcc, ~40 s).
    "$VENV/bin/pip" install -q "vantage6-server==4.15.2" "vantage6-backend-common==4.15.2" uwsgi
    if [[ $ORIG_DB_URI == postgres* ]]; then
        "$VENV/bin/pip" install -q psycopg2-binary
    fi
    "$VENV/bin/python" -c "import vantage6.server, importlib.metadata as m; print('vantage6-server', m.version('vantage6-server'))"
}

write_config() {
    mkdir -p "$ORIG_STATE/data" "$ORIG_STATE/log"
    cat >"$ORIG_STATE/config.yaml" <<EOF
allow_drop_all: false
api_path: /api
description: benchmark reference
ip: 127.0.0.1
port: $ORIG_PORT
uri: $ORIG_DB_URI
jwt_secret_key: $JWT_SECRET
logging:
  level: WARNING
  file: $ORIG_STATE/log/server.log
  use_console: false
  backup_count: 1
  max_size: 10240
  format: '%(asctime)s - %(name)-14s - %(levelname)-8s - %(message)s'
  datefmt: '%Y-%m-%d %H:%M:%S'
EOF
    if [[ -n ${ORIG_EXTRA_CONFIG:-} ]]; then
        printf '%s\n' "$ORIG_EXTRA_CONFIG" >>"$ORIG_STATE/config.yaml"
    fi
}

is_running() {
    [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

start() {
    [[ -x $VENV/bin/uwsgi ]] || install
    if is_running; then
        echo "already running (pid $(cat "$PIDFILE"))"
        return 0
    fi
    if [[ ${ORIG_KEEP_DB:-0} != 1 && $ORIG_DB_URI == sqlite* ]]; then
        rm -f "$DB_FILE"
    fi
    write_config
    # The flags of the upstream `v6 server start` command, bound to loopback instead of every
    # interface, daemonized, with a pid file.
    (cd "$ORIG_STATE" && "$VENV/bin/uwsgi" --http "127.0.0.1:$ORIG_PORT" --gevent 1000 --http-websockets \
        --http-chunked-input --http-keepalive --post-buffering 0 --master --processes "$ORIG_PROCESSES" \
        --callable app --disable-logging \
        --wsgi-file "$VENV/lib/python3.10/site-packages/vantage6/server/wsgi.py" \
        --pyargv "$ORIG_STATE/config.yaml" --pidfile "$PIDFILE" --daemonize "$LOG")
    for _ in $(seq 1 120); do
        if curl -fsS "http://127.0.0.1:$ORIG_PORT/api/version" >/dev/null 2>&1; then
            echo "vantage6-server 4.15.2 on http://127.0.0.1:$ORIG_PORT/api (pid $(cat "$PIDFILE"))"
            return 0
        fi
        if grep -q "unable to load app" "$LOG" 2>/dev/null; then
            break
        fi
        sleep 0.5
    done
    echo "the server did not come up; see $LOG" >&2
    grep -v "no python application found" "$LOG" | tail -20 >&2
    stop
    return 1
}

stop() {
    if is_running; then
        "$VENV/bin/uwsgi" --stop "$PIDFILE"
        for _ in $(seq 1 40); do
            is_running || break
            sleep 0.25
        done
    fi
    rm -f "$PIDFILE"
}

case ${1:-start} in
    install) install ;;
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status) if is_running; then echo "running (pid $(cat "$PIDFILE"))"; else echo "stopped"; exit 1; fi ;;
    *) echo "usage: $0 install|start|stop|restart|status" >&2; exit 2 ;;
esac
