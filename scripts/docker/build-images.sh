#!/usr/bin/env bash
# Builds the local images the Docker driver's tests (and offline
# installations) use, without any container registry: a Debian trixie root
# filesystem (debootstrap, PostgreSQL 17 + PgBouncer 1.24 from Debian's
# packages) imported twice with `docker import`, once per role:
#
#   sota-db/postgres:17-trixie      entrypoint honouring the official postgres
#                                   image's environment contract
#   sota-db/pgbouncer:1.24-trixie   pgbouncer as an unprivileged user, config
#                                   written into the container by the driver
#
# then sota-db's own image on top of the second (build-service-image.sh):
#
#   sota-db/sota-db:latest          the service, PostgreSQL and PgBouncer
#
# Idempotent: does nothing when the tags exist and were built from the same
# inputs (this script and the two entrypoints; the service image has its own
# check). Needs root, a running Docker engine (start-dockerd.sh) and a Debian
# mirror.
#
# Environment:
#   SOTA_POSTGRES_IMAGE   tag of the PostgreSQL image (default sota-db/postgres:17-trixie)
#   SOTA_PGBOUNCER_IMAGE  tag of the PgBouncer image (default sota-db/pgbouncer:1.24-trixie)
#   SOTA_SERVICE_IMAGE    tag of sota-db's own image (default sota-db/sota-db:latest)
#   SOTA_DEBIAN_MIRROR    Debian mirror (default: the one apt uses on this machine)
#   SOTA_IMAGE_CACHE      where downloaded .debs are kept between builds
#                         (default /var/cache/sota-db/debootstrap)
#   SOTA_IMAGE_BUILD_TIMEOUT  seconds debootstrap may take (default 900)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
postgres_tag="${SOTA_POSTGRES_IMAGE:-sota-db/postgres:17-trixie}"
pgbouncer_tag="${SOTA_PGBOUNCER_IMAGE:-sota-db/pgbouncer:1.24-trixie}"
cache_dir="${SOTA_IMAGE_CACHE:-/var/cache/sota-db/debootstrap}"
build_timeout="${SOTA_IMAGE_BUILD_TIMEOUT:-900}"
suite=trixie

log() { printf 'build-images: %s\n' "$*" >&2; }

# The key changes whenever an input of the image changes, so a stale image
# under the same tag is rebuilt instead of silently reused.
build_key="$(cat "${BASH_SOURCE[0]}" "$here/postgres-entrypoint.sh" "$here/pgbouncer-entrypoint.sh" | sha256sum | cut -c1-16)"

image_is_current() {
  local key
  key="$(docker image inspect --format '{{ index .Config.Labels "io.sota.image-build" }}' "$1" 2>/dev/null)" || return 1
  [[ "$key" == "$build_key" ]]
}

build_service_image() {
  SOTA_PGBOUNCER_IMAGE="$pgbouncer_tag" bash "$here/build-service-image.sh"
}

if image_is_current "$postgres_tag" && image_is_current "$pgbouncer_tag"; then
  log "$postgres_tag and $pgbouncer_tag are up to date"
  build_service_image
  exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
  log "building the root filesystem needs root"
  exit 1
fi

# The mirror apt already uses here (deb822 .sources first, then sources.list),
# skipping security mirrors, which do not carry the main suite.
apt_mirror() {
  local uri
  uri="$(awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
    /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)"
  if [[ -z "$uri" && -f /etc/apt/sources.list ]]; then
    uri="$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) { if ($i !~ /security/) print $i; break } }' \
      /etc/apt/sources.list | head -n1)"
  fi
  printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}
mirror="${SOTA_DEBIAN_MIRROR:-$(apt_mirror)}"

if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends debootstrap >/tmp/sota-apt-install.log 2>&1 || {
    apt-get update >/tmp/sota-apt-update.log 2>&1
    apt-get install -y --no-install-recommends debootstrap >/tmp/sota-apt-install.log 2>&1
  }
fi

rootfs="$(mktemp -d /var/tmp/sota-rootfs.XXXXXX)"
cleanup() {
  # debootstrap mounts /proc and /sys inside the target; a killed run can leave
  # them, and rm must never descend into a live /proc or /sys.
  local m
  for m in $(awk -v r="$rootfs" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "$rootfs"
}
trap cleanup EXIT

mkdir -p "$cache_dir"
log "debootstrap $suite from $mirror into $rootfs (takes a few minutes)"
started=$SECONDS
if ! timeout "$build_timeout" debootstrap --variant=minbase \
  --include=postgresql-17,pgbouncer,util-linux \
  --cache-dir="$cache_dir" \
  "$suite" "$rootfs" "$mirror" >/tmp/sota-debootstrap.log 2>&1; then
  log "debootstrap failed; last lines of /tmp/sota-debootstrap.log:"
  tail -n 30 /tmp/sota-debootstrap.log >&2
  if [[ -f "$rootfs/debootstrap/debootstrap.log" ]]; then tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2; fi
  exit 1
fi
log "debootstrap took $((SECONDS - started))s"

# Package scripts may have started a server inside the chroot; none may survive.
for proc in /proc/[0-9]*; do
  if [[ "$(readlink "$proc/root" 2>/dev/null)" == "$rootfs" ]]; then
    kill -9 "${proc#/proc/}" 2>/dev/null || true
  fi
done

pg_bin=/usr/lib/postgresql/17/bin
pgbouncer_version="$(chroot "$rootfs" pgbouncer --version | awk 'NR == 1 { print $2 }')"
postgres_version="$(chroot "$rootfs" "$pg_bin/postgres" --version | awk '{ print $3 }')"
log "PostgreSQL $postgres_version, PgBouncer $pgbouncer_version"

# The cluster the package created is not ours: the entrypoint runs initdb on an
# empty PGDATA, like the official image.
rm -rf "$rootfs/etc/postgresql/17" "$rootfs/var/lib/postgresql/17"
# Listen on all interfaces inside the container, as the official image does;
# the container's networks decide who can reach it.
sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" "$rootfs/usr/share/postgresql/17/postgresql.conf.sample"
grep -F "listen_addresses = '*'" "$rootfs/usr/share/postgresql/17/postgresql.conf.sample" >/dev/null

chroot "$rootfs" useradd --system --user-group --no-create-home --home-dir /nonexistent \
  --shell /usr/sbin/nologin pgbouncer
install -d -m 0755 "$rootfs/etc/pgbouncer" "$rootfs/docker-entrypoint-initdb.d"
rm -f "$rootfs/etc/pgbouncer/pgbouncer.ini" "$rootfs/etc/pgbouncer/userlist.txt"
install -m 0755 "$here/postgres-entrypoint.sh" "$rootfs/usr/local/bin/docker-entrypoint.sh"
install -m 0755 "$here/pgbouncer-entrypoint.sh" "$rootfs/usr/local/bin/pgbouncer-entrypoint.sh"

# Smaller image: nothing below is needed at run time. Without llvmjit.so
# PostgreSQL simply runs without JIT, which saves LLVM's ~150 MB.
rm -rf "$rootfs"/usr/lib/postgresql/17/lib/llvmjit* "$rootfs"/usr/lib/postgresql/17/lib/bitcode \
  "$rootfs"/usr/lib/x86_64-linux-gnu/libLLVM* "$rootfs"/usr/lib/x86_64-linux-gnu/libz3.so* \
  "$rootfs"/usr/share/locale/* \
  "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/var/log/*.log "$rootfs"/debootstrap
: >"$rootfs/etc/hostname"

path="$pg_bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
common=(
  --change "ENV PATH=$path"
  --change "ENV LANG=C.UTF-8"
  --change "LABEL io.sota.image-build=$build_key"
  --change "LABEL org.opencontainers.image.source=sota-db/scripts/docker/build-images.sh"
  --change "EXPOSE 5432"
)

# Images these tags named before, removed once replaced (unless still in use).
old_images="$(docker image inspect --format '{{.Id}}' "$postgres_tag" "$pgbouncer_tag" 2>/dev/null || true)"

log "importing $postgres_tag"
tar --numeric-owner --xattrs -C "$rootfs" -c . | docker import "${common[@]}" \
  --change "ENV PGDATA=/var/lib/postgresql/data" \
  --change "VOLUME /var/lib/postgresql/data" \
  --change "LABEL io.sota.postgres-version=$postgres_version" \
  --change 'ENTRYPOINT ["docker-entrypoint.sh"]' \
  --change 'CMD ["postgres"]' \
  - "$postgres_tag" >/dev/null

log "importing $pgbouncer_tag"
tar --numeric-owner --xattrs -C "$rootfs" -c . | docker import "${common[@]}" \
  --change "LABEL io.sota.pgbouncer-version=$pgbouncer_version" \
  --change 'ENTRYPOINT ["pgbouncer-entrypoint.sh"]' \
  --change 'CMD ["pgbouncer", "/etc/pgbouncer/pgbouncer.ini"]' \
  - "$pgbouncer_tag" >/dev/null

current_images="$(docker image inspect --format '{{.Id}}' "$postgres_tag" "$pgbouncer_tag")"
for image in $old_images; do
  if ! grep -qx "$image" <<<"$current_images"; then docker rmi "$image" >/dev/null 2>&1 || true; fi
done

log "built $postgres_tag and $pgbouncer_tag in $((SECONDS - started))s"

build_service_image
