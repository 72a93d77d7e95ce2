#!/usr/bin/env bash
# Runs a command as if nothing were installed: in a private mount namespace (unshare -m) where the
# machine's PostgreSQL and Docker are hidden, so that pgfresh's automatic choice finds no DB_URL,
# no Docker daemon and no PostgreSQL binaries, and has to use the embedded source.
#
#   scripts/bare.sh cargo run --example quickstart
#
# Hidden: the install locations the local source searches (/usr/lib/postgresql, /usr/pgsql-*,
# Homebrew's) under empty tmpfs mounts, and Docker's sockets under /dev/null; DB_URL,
# DATABASE_URL, DOCKER_HOST and PGFRESH_SERVER/PGFRESH_PG_BIN are unset. The script checks what
# it promises (no initdb or pg_ctl on PATH or in those places, no answering Docker) before running
# the command. Needs util-linux's unshare, and root or unprivileged user namespaces (a user other
# than root gets one, mapped to root inside, to mount in).
set -euo pipefail

[[ $# -ge 1 ]] || { echo "usage: $0 COMMAND [ARG...]" >&2; exit 2; }
as_root=()
[[ $(id -u) == 0 ]] || as_root=(--map-root-user)

# shellcheck disable=SC2016 # the script below expands in the namespace's shell
exec unshare "${as_root[@]}" --mount --propagation private bash -c '
  set -euo pipefail
  fail() { echo "bare: $*" >&2; exit 1; }
  shopt -s nullglob
  for dir in /usr/lib/postgresql /usr/pgsql-* /opt/homebrew/opt /usr/local/opt; do
    [[ -d $dir ]] && mount -t tmpfs -o mode=755,size=1m pgfresh-bare "$dir"
  done
  for sock in /var/run/docker.sock /run/docker.sock "${HOME:-/root}"/.docker/run/docker.sock \
    "${XDG_RUNTIME_DIR:-/nonexistent}"/docker.sock; do
    [[ -e $sock ]] && mount --bind /dev/null "$sock"
  done
  unset DB_URL DATABASE_URL DOCKER_HOST PGFRESH_SERVER PGFRESH_PG_BIN
  IFS=: read -ra path_dirs <<<"$PATH"
  for dir in "${path_dirs[@]}" /usr/lib/postgresql/*/bin; do
    [[ -e $dir/initdb || -e $dir/pg_ctl ]] && fail "$dir still holds initdb or pg_ctl"
  done
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    fail "a Docker daemon still answers"
  fi
  echo "bare: no PostgreSQL, no Docker: $*" >&2
  exec "$@"
' bare "$@"
