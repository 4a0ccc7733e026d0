#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks to run sota-db with the
# embedded (process) runtime: PostgreSQL and PgBouncer from the OS packages,
# and the node packages. Idempotent: does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
if [ ${#missing[@]} -gt 0 ]; then
  echo "sota-db: installing ${missing[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Debian package starts a default cluster and pgbouncer service where
# systemd runs; sota-db runs its own instances and needs neither.

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "sota-db: installing node packages" >&2
  # npm ci installs exactly what the lock file pins and fails when the lock
  # file and package.json disagree. The lock file records every platform's
  # optional packages (@bufbuild/buf-darwin-*, @esbuild/*, …), so this works
  # on Linux and macOS alike; CI checks that with npm ci --dry-run per platform.
  # (@bufbuild/buf is 1.60.0 because 1.59.0's macOS and Windows packages are
  # not on the registry, so no lock file could record them.)
  npm ci --no-audit --no-fund
fi
