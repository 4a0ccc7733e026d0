#!/bin/sh
# Entrypoint of sota-db's PgBouncer image: runs PgBouncer as the unprivileged
# pgbouncer user with the configuration the Docker driver writes into the
# container (/etc/pgbouncer/pgbouncer.ini and userlist.txt) before starting it.
set -e

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
  set -- pgbouncer "$@" /etc/pgbouncer/pgbouncer.ini
fi

if [ "$1" = pgbouncer ] && [ "$(id -u)" = 0 ]; then
  chown -R pgbouncer:pgbouncer /etc/pgbouncer
  exec setpriv --reuid=pgbouncer --regid=pgbouncer --init-groups "$@"
fi

exec "$@"
