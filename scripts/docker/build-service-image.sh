#!/usr/bin/env bash
# Builds sota-db's own image (default tag sota-db/sota-db:latest) without any
# registry: `docker build` FROM the PgBouncer image build-images.sh made (it
# has PostgreSQL and PgBouncer for the process runtime), with a context staged
# here from this checkout:
#
#   node           this machine's node binary: the one the native modules in
#                  node_modules (better-sqlite3) were built and tested with, so
#                  their ABI matches; it must link only the C/C++ runtime
#                  (official and NodeSource builds do; a distribution's
#                  /usr/bin/node linking libnode does not, see SOTA_NODE_BIN)
#   app/           src, gen, proto, package.json, package-lock.json and
#                  node_modules pruned to production dependencies (tsx included)
#
# Nothing is downloaded. Idempotent: does nothing when the tag exists and was
# built from the same inputs (these files, the app, node, the base image).
#
# Environment:
#   SOTA_SERVICE_IMAGE    tag (default sota-db/sota-db:latest)
#   SOTA_PGBOUNCER_IMAGE  base image (default sota-db/pgbouncer:1.24-trixie)
#   SOTA_NODE_BIN         node binary to ship (default: `command -v node`)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
tag="${SOTA_SERVICE_IMAGE:-sota-db/sota-db:latest}"
base="${SOTA_PGBOUNCER_IMAGE:-sota-db/pgbouncer:1.24-trixie}"
node_bin="$(readlink -f "${SOTA_NODE_BIN:-$(command -v node)}")"
dockerfile="$here/sota-db.Dockerfile"

log() { printf 'build-service-image: %s\n' "$*" >&2; }

node_major="$("$node_bin" -p 'process.versions.node.split(".")[0]')"
if (( node_major < 20 )); then
  log "$node_bin is Node $node_major; sota-db needs Node 20.12 or later"
  exit 1
fi
if ldd "$node_bin" 2>/dev/null | grep -Eq 'not found|libnode|libuv|libicu'; then
  log "$node_bin needs shared libraries the image lacks (a distribution build?): set SOTA_NODE_BIN to an official build"
  exit 1
fi

# The app's files: what git knows (tracked, or new and not ignored), else the folders.
app_files() {
  if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$repo" ls-files --cached --others --exclude-standard -- src gen proto package.json package-lock.json
  else
    (cd "$repo" && find src gen proto -type f && printf '%s\n' package.json package-lock.json)
  fi
}

if [[ ! -d "$repo/node_modules" ]]; then
  log "$repo/node_modules is missing: run npm ci first"
  exit 1
fi

base_id="$(docker image inspect --format '{{.Id}}' "$base")" || {
  log "base image $base is missing: run scripts/docker/build-images.sh"
  exit 1
}
build_key="$(
  {
    cat "${BASH_SOURCE[0]}" "$dockerfile"
    echo "$base_id"
    sha256sum "$node_bin" | cut -d' ' -f1
    (cd "$repo" && app_files | LC_ALL=C sort | while IFS= read -r file; do [[ -f "$file" ]] && sha256sum "$file"; done)
  } | sha256sum | cut -c1-16
)"

current="$(docker image inspect --format '{{ index .Config.Labels "io.sota.service-build" }}' "$tag" 2>/dev/null || true)"
if [[ "$current" == "$build_key" ]]; then
  log "$tag is up to date"
  exit 0
fi

started=$SECONDS
context="$(mktemp -d /var/tmp/sota-service-image.XXXXXX)"
trap 'rm -rf --one-file-system "$context"' EXIT
mkdir -p "$context/app"
cp "$node_bin" "$context/node"
(cd "$repo" && app_files | while IFS= read -r file; do [[ -f "$file" ]] && printf '%s\n' "$file"; done) |
  (cd "$repo" && xargs -d '\n' cp --parents -t "$context/app")
# node_modules may be a symlink (a worktree sharing another checkout's): copy what it points at.
mkdir "$context/app/node_modules"
cp -a "$(readlink -f "$repo/node_modules")/." "$context/app/node_modules/"
(cd "$context/app" && npm prune --omit=dev --offline --ignore-scripts --no-audit --no-fund >/dev/null)

old_image="$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
log "building $tag from $base"
docker build --quiet --file "$dockerfile" --build-arg "BASE=$base" \
  --label "io.sota.service-build=$build_key" \
  --label "org.opencontainers.image.source=sota-db/scripts/docker/build-service-image.sh" \
  --tag "$tag" "$context" >/dev/null
new_image="$(docker image inspect --format '{{.Id}}' "$tag")"
if [[ -n "$old_image" && "$old_image" != "$new_image" ]]; then docker rmi "$old_image" >/dev/null 2>&1 || true; fi
log "built $tag in $((SECONDS - started))s"
