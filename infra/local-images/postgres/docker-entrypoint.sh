#!/bin/bash
# The official image's entrypoint, the part infra/compose.yaml relies on (see the Dockerfile).
set -euo pipefail

if [ "${1:-}" != postgres ]; then
  exec "$@"
fi

POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
  echo "error: POSTGRES_PASSWORD is not set (the official image refuses too)" >&2
  exit 1
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 -D "$PGDATA"
  printf 'host all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
  # First start: on the socket only, for the init scripts; then the real start below.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k /var/run/postgresql" -w start
  export PGHOST=/var/run/postgresql PGUSER="$POSTGRES_USER"
  if [ "$POSTGRES_DB" != postgres ]; then
    psql -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE \"$POSTGRES_DB\""
  fi
  for script in /docker-entrypoint-initdb.d/*; do
    case "$script" in
      *.sh) echo "running $script"; . "$script" ;;
      *.sql) echo "running $script"; psql -v ON_ERROR_STOP=1 -d "$POSTGRES_DB" -f "$script" ;;
      *) ;;
    esac
  done
  unset PGHOST PGUSER
  pg_ctl -D "$PGDATA" -m fast -w stop
fi

exec postgres -k /var/run/postgresql "${@:2}"
