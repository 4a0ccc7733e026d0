#!/usr/bin/env bash
# Makes a Docker engine available on this machine for the Docker driver's
# tests: installs docker.io from the OS packages when dockerd is missing,
# starts dockerd in the background when no engine answers, and waits (bounded)
# until `docker info` works. Safe to run any number of times.
#
# Environment:
#   DOCKER_HOST               an engine elsewhere: only checked, never started
#   SOTA_DOCKERD_LOG          dockerd's log file (default /tmp/sota-dockerd.log)
#   SOTA_DOCKERD_WAIT_SECONDS how long to wait for the engine (default 60)
set -euo pipefail

log() { printf 'start-dockerd: %s\n' "$*" >&2; }

wait_seconds="${SOTA_DOCKERD_WAIT_SECONDS:-60}"
dockerd_log="${SOTA_DOCKERD_LOG:-/tmp/sota-dockerd.log}"

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

install_packages() {
  # apt-get must be told not to ask; an update is needed once on a fresh machine.
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends "$@" >/tmp/sota-apt-install.log 2>&1; then
    apt-get update >/tmp/sota-apt-update.log 2>&1
    apt-get install -y --no-install-recommends "$@" >/tmp/sota-apt-install.log 2>&1 || {
      log "apt-get install $* failed; see /tmp/sota-apt-install.log"
      tail -n 20 /tmp/sota-apt-install.log >&2
      exit 1
    }
  fi
}

# Alive, not a zombie: a killed process stays listed until someone reaps it.
alive() { [[ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" =~ ^[^ZX]$ ]]; }

dockerd_alive() {
  local pid
  for pid in $(pgrep -x dockerd); do
    alive "$pid" && return 0
  done
  return 1
}

# A dockerd killed without warning leaves pid files behind; one naming a dead
# (or reused) pid makes the next dockerd wait for a containerd that is gone.
clear_stale_pid_files() {
  local file pid
  for file in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
    [[ -f "$file" ]] || continue
    pid="$(tr -dc '0-9' <"$file")"
    if [[ "$file" == /var/run/docker.pid || -z "$pid" ]] || ! alive "$pid"; then rm -f "$file"; fi
  done
}

if command -v docker >/dev/null 2>&1 && engine_answers; then
  log "engine already answers"
  exit 0
fi

if [[ -n "${DOCKER_HOST:-}" && "${DOCKER_HOST}" != unix:///var/run/docker.sock ]]; then
  log "DOCKER_HOST=${DOCKER_HOST} does not answer; not starting a local dockerd"
  exit 1
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
  if [[ "$(id -u)" != 0 ]]; then
    log "dockerd is not installed and this is not root: install docker.io first"
    exit 1
  fi
  log "installing docker.io"
  # iptables is what dockerd's bridge networks need; docker.io only recommends it.
  install_packages docker.io iptables
fi

if ! dockerd_alive; then
  if [[ "$(id -u)" != 0 ]]; then
    log "dockerd is not running and this is not root: start it first"
    exit 1
  fi
  clear_stale_pid_files
  log "starting dockerd (log: ${dockerd_log})"
  # setsid detaches it from this script's process group, so the engine outlives
  # the CI step that started it.
  setsid dockerd >"${dockerd_log}" 2>&1 </dev/null &
fi

deadline=$((SECONDS + wait_seconds))
until engine_answers; do
  if ((SECONDS >= deadline)); then
    log "engine did not answer within ${wait_seconds}s; last lines of ${dockerd_log}:"
    tail -n 30 "${dockerd_log}" >&2 || true
    exit 1
  fi
  sleep 1
done
log "engine ready: $(docker version --format 'server {{.Server.Version}}, API {{.Server.APIVersion}}' 2>/dev/null || echo up)"
