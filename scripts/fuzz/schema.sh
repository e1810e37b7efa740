#!/usr/bin/env bash
# Schema fuzzing: schemathesis (--checks all) against a server of this worktree, as each kind of caller,
# each on a fresh demo network. The server runs on V6_DATABASE_URL (emptied first: give a database of its
# own) at 127.0.0.1:V6_PORT, and is stopped again at the end.
#
#   V6_DATABASE_URL=sqlite:////tmp/fuzz.sqlite3 V6_PORT=7899 scripts/fuzz/schema.sh OUT_DIR [EXAMPLES] [IDENTITY...]
#
# IDENTITY: root, researcher, collaboration-admin, organization-admin, node, container, anonymous (all by
# default); EXAMPLES per operation (20). One report per identity, OUT_DIR/IDENTITY.txt.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=$(realpath -m "$1")
EXAMPLES=${2:-20}
shift $(($# < 2 ? $# : 2))
IDENTITIES=("$@")
[ ${#IDENTITIES[@]} -gt 0 ] || IDENTITIES=(root researcher collaboration-admin organization-admin node container anonymous)
: "${V6_DATABASE_URL:?a database of its own}" "${V6_PORT:?a free port}"
export V6_HOST=127.0.0.1 V6_ROOT_PASSWORD=${V6_ROOT_PASSWORD:-Fuzz-Root-123!}
export V6_SECRET_KEY=${V6_SECRET_KEY:-$(openssl rand -hex 32)} V6_JWT_SECRET_KEY=${V6_JWT_SECRET_KEY:-$(openssl rand -hex 32)}
# Logins are part of the fuzzing: the lock-out of an address would end it.
export V6_LOGIN_FAILURES_PER_MINUTE=${V6_LOGIN_FAILURES_PER_MINUTE:-10000}
PYTHON=$ROOT/.venv/bin/python
API=http://127.0.0.1:$V6_PORT/api
mkdir -p "$OUT"
cd "$ROOT"

server=
stop_server() {
    [ -n "$server" ] || return 0
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=
}
trap stop_server EXIT

start_server() {
    case "$V6_DATABASE_URL" in
        sqlite:///*) rm -f "${V6_DATABASE_URL#sqlite://}" "${V6_DATABASE_URL#sqlite://}"-* ;;
        # Created and migrated when new, then emptied.
        *) "$PYTHON" manage.py bootstrap >"$OUT/bootstrap.log" 2>&1 && "$PYTHON" manage.py flush --no-input ;;
    esac
    "$PYTHON" manage.py bootstrap >"$OUT/bootstrap.log" 2>&1
    "$PYTHON" manage.py demo --json --reset >"$OUT/demo.json"
    "$PYTHON" -m vantage6.serve >"$OUT/server-$1.log" 2>&1 &
    server=$!
    for _ in $(seq 60); do curl -sf "$API/health" >/dev/null && return 0; sleep 1; done
    echo "the server did not start: $OUT/server-$1.log" >&2
    return 1
}

for identity in "${IDENTITIES[@]}"; do
    start_server "$identity"
    auth=()
    if [ "$identity" != anonymous ]; then
        token=$("$PYTHON" scripts/fuzz/identities.py "$API" "$OUT/demo.json" "$V6_ROOT_PASSWORD" |
            "$PYTHON" -c "import json, sys; print(json.load(sys.stdin)['$identity'])")
        auth=(-H "Authorization: Bearer $token")
    fi
    # Revoking the token or changing the password would end the run's own login.
    "$ROOT/.venv/bin/schemathesis" --config-file "$ROOT/scripts/fuzz/schemathesis.toml" run "$API/schema?format=json" "${auth[@]}" --checks all \
        --exclude-checks ignored_auth --exclude-path /api/token/revoke --exclude-path /api/password/change \
        --max-examples "$EXAMPLES" --workers 2 --request-timeout 30 --suppress-health-check all --seed 18 \
        >"$OUT/$identity.txt" 2>&1 || true
    stop_server
    grep -E "❌ ST[0-9]+|generated" "$OUT/$identity.txt" | sed "s/^/$identity: /" || true
done
