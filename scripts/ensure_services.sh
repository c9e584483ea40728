#!/usr/bin/env bash
# The tests use the real PostgreSQL and Redis on 127.0.0.1. Start them if they are installed
# here but stopped; fail with a clear message if they cannot be reached.
set -uo pipefail
PGHOST="${PGHOST:-127.0.0.1}"; PGPORT="${PGPORT:-5432}"
REDIS_HOST="${REDIS_HOST:-127.0.0.1}"; REDIS_PORT="${REDIS_PORT:-6379}"

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

if ! port_open "$PGHOST" "$PGPORT"; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "Starting PostgreSQL..."
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 30); do port_open "$PGHOST" "$PGPORT" && break; sleep 1; done
  fi
fi
if ! port_open "$REDIS_HOST" "$REDIS_PORT"; then
  if command -v redis-server >/dev/null; then
    echo "Starting Redis..."
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no || true
    for _ in $(seq 30); do port_open "$REDIS_HOST" "$REDIS_PORT" && break; sleep 1; done
  fi
fi
port_open "$PGHOST" "$PGPORT" || { echo "PostgreSQL is not reachable on $PGHOST:$PGPORT"; exit 1; }
port_open "$REDIS_HOST" "$REDIS_PORT" || { echo "Redis is not reachable on $REDIS_HOST:$REDIS_PORT"; exit 1; }
