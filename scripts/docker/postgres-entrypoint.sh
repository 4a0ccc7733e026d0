#!/bin/bash
# Entrypoint of sota-db's PostgreSQL image. It honours the environment contract
# of the official postgres image (POSTGRES_USER, POSTGRES_PASSWORD,
# POSTGRES_DB, PGDATA, POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD, the
# *_FILE variants and /docker-entrypoint-initdb.d), so the Docker driver works
# the same with this image and with the official one.
set -Eeo pipefail

# Reads VAR or VAR_FILE (the official image's Docker-secrets convention).
file_env() {
  local var="$1" file_var="${1}_FILE" def="${2:-}"
  if [ "${!var:-}" ] && [ "${!file_var:-}" ]; then
    echo >&2 "error: both $var and $file_var are set (but are exclusive)"
    exit 1
  fi
  local val="$def"
  if [ "${!var:-}" ]; then
    val="${!var}"
  elif [ "${!file_var:-}" ]; then
    val="$(<"${!file_var}")"
  fi
  export "$var"="$val"
  unset "$file_var"
}

if [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi

if [ "$1" != postgres ]; then
  exec "$@"
fi

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

if [ "$(id -u)" = 0 ]; then
  # Volumes arrive owned by root; postgres refuses to run as root, so fix the
  # ownership and come back as the postgres user.
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 0700 "$PGDATA"
  chmod 3777 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  file_env POSTGRES_PASSWORD
  file_env POSTGRES_USER postgres
  file_env POSTGRES_DB "$POSTGRES_USER"
  file_env POSTGRES_INITDB_ARGS

  if [ -z "$POSTGRES_PASSWORD" ] && [ "${POSTGRES_HOST_AUTH_METHOD:-}" != trust ]; then
    echo >&2 "error: database is uninitialized and superuser password is not specified (POSTGRES_PASSWORD)"
    exit 1
  fi

  # The password goes through a pipe, never a command line.
  if [ -n "$POSTGRES_PASSWORD" ]; then
    # shellcheck disable=SC2086
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") $POSTGRES_INITDB_ARGS
  else
    # shellcheck disable=SC2086
    initdb --username="$POSTGRES_USER" $POSTGRES_INITDB_ARGS
  fi
  # Like the official image: remote logins use the server's password hashing.
  if [ -z "${POSTGRES_HOST_AUTH_METHOD:-}" ]; then
    POSTGRES_HOST_AUTH_METHOD="$(postgres -C password_encryption)"
  fi
  printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"

  # A temporary server on the unix socket only, so nothing outside sees a
  # half-initialised database.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
  export PGUSER="$POSTGRES_USER" PGPASSWORD="$POSTGRES_PASSWORD"
  psql=(psql -X -v ON_ERROR_STOP=1 --no-password --no-psqlrc --dbname postgres)
  if [ "$POSTGRES_DB" != postgres ]; then
    exists="$("${psql[@]}" -At --set db="$POSTGRES_DB" <<<"SELECT 1 FROM pg_database WHERE datname = :'db'")"
    if [ -z "$exists" ]; then
      "${psql[@]}" --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db"'
    fi
  fi
  shopt -s nullglob
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
    *.sh) echo "running $f"; . "$f" ;;
    *.sql) echo "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
    *.sql.gz) echo "running $f"; gunzip -c "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" ;;
    *) echo "ignoring $f" ;;
    esac
  done
  unset PGPASSWORD
  pg_ctl -D "$PGDATA" -m fast -w stop
  echo "PostgreSQL init process complete; ready for start up."
fi

unset POSTGRES_PASSWORD
exec "$@"
