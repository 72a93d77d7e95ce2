#!/usr/bin/env bash
# Build a local PostgreSQL container image from this machine's Debian package sources, without any
# container registry (air-gapped CI, and this project's own CI). See DESIGN.md, "Offline container image".
#
# Usage:  scripts/offline-image.sh [IMAGE_REF]
#         PGFRESH_IMAGE=$(scripts/offline-image.sh | tail -n1)
#
# IMAGE_REF defaults to $PGFRESH_OFFLINE_IMAGE, then pgfresh-offline/postgres:<major>. An image that
# already exists under that reference is reused as is (`docker image rm` it to rebuild). Progress goes
# to stderr; the last line on stdout is the image reference alone.
#
# Needs root, debootstrap and a running Docker daemon. Optional environment:
#   PGFRESH_OFFLINE_PG_MAJOR  PostgreSQL major to install (default 15: postgresql-<major> must exist
#                             in the suite: 15 in bookworm, 17 in trixie)
#   PGFRESH_DEBIAN_SUITE      suite to bootstrap (default: VERSION_CODENAME from /etc/os-release)
#   PGFRESH_DEBIAN_MIRROR     mirror URL (default: the apt source that serves that suite's main; for
#                             a suite the apt sources do not list, e.g. trixie on a bookworm host,
#                             the one that serves the host's own suite: a Debian mirror carries
#                             every current suite)
#
# e.g. PGFRESH_OFFLINE_PG_MAJOR=17 PGFRESH_DEBIAN_SUITE=trixie scripts/offline-image.sh builds
# pgfresh-offline/postgres:17 on a bookworm host (debootstrap 1.0.128+nmu2+deb12u2 knows trixie;
# debian-archive-keyring 2023.3+deb12u2 holds trixie's signing keys).
#
# The image honours the official postgres image's contract as testcontainers-modules' `Postgres`
# uses it: POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, POSTGRES_HOST_AUTH_METHOD,
# POSTGRES_INITDB_ARGS, /docker-entrypoint-initdb.d/*.{sh,sql,sql.gz}, a command of `postgres ARGS` or
# just `-c name=value ...`, and the ready line "database system is ready to accept connections" once
# on stdout (temporary init server) and once on stderr (final server).
set -euo pipefail

# Everything but the final image reference goes to stderr.
exec 3>&1 1>&2

pg_major=${PGFRESH_OFFLINE_PG_MAJOR:-15}
ref=${1:-${PGFRESH_OFFLINE_IMAGE:-pgfresh-offline/postgres:$pg_major}}
entrypoint=/usr/local/bin/docker-entrypoint.sh

log() { printf 'offline-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source-path=SCRIPTDIR source=lib/apt-mirror.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt-mirror.sh"

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# The Debian suite to bootstrap: PGFRESH_DEBIAN_SUITE, else the host's own release.
debian_suite() {
  if [[ -n ${PGFRESH_DEBIAN_SUITE:-} ]]; then
    printf '%s\n' "$PGFRESH_DEBIAN_SUITE"
    return
  fi
  local codename
  codename=$(host_suite)
  [[ -n $codename ]] || die "cannot tell the Debian suite: set PGFRESH_DEBIAN_SUITE (e.g. bookworm)"
  printf '%s\n' "$codename"
}

# Remove the bootstrap tree. debootstrap may leave proc/sys/dev mounted inside it when it fails:
# unmount first, and never let rm cross into another file system (a bind-mounted /dev is the host's).
# Also drops the intermediate import tag.
rootfs=
import_tag=pgfresh-offline-import:$$
cleanup() {
  docker image rm "$import_tag" >/dev/null 2>&1 || true
  [[ -n $rootfs && -d $rootfs ]] || return 0
  local m
  awk -v r="$rootfs" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do umount -l "$m" || true; done
  rm -rf --one-file-system "$rootfs"
}
trap cleanup EXIT

# The entrypoint written into the image.
write_entrypoint() {
  cat >"$1" <<'ENTRYPOINT'
#!/bin/bash
# Entrypoint of the pgfresh offline PostgreSQL image (scripts/offline-image.sh): the official postgres
# image's contract, trimmed to what tests need. Initialises PGDATA on first start (initdb, then a
# temporary socket-only server for POSTGRES_DB and /docker-entrypoint-initdb.d), then execs the server.
set -Eeuo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

# `docker run IMAGE -c fsync=off`: leading options are server options.
if [[ $# -eq 0 || $1 == -* ]]; then
  set -- postgres "$@"
fi
if [[ $1 != postgres ]]; then
  exec "$@"
fi

# As root: take ownership of the data directory (a --tmpfs mount arrives root-owned and 1777), then
# re-run this script as postgres; PostgreSQL refuses to run as root.
if [[ $(id -u) == 0 ]]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  find "$PGDATA" /var/run/postgresql \! -user postgres -exec chown postgres:postgres {} +
  chmod 700 "$PGDATA"
  chmod 2775 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}

psql_init() {
  psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$user" "$@"
}

init_cluster() {
  if [[ -z ${POSTGRES_PASSWORD:-} && $auth != trust ]]; then
    cat >&2 <<'EOF'
Error: the database is uninitialised and POSTGRES_PASSWORD is empty.
  Set POSTGRES_PASSWORD (e.g. -e POSTGRES_PASSWORD=secret), or allow password-less connections
  with -e POSTGRES_HOST_AUTH_METHOD=trust.
EOF
    exit 1
  fi
  # --no-sync: a test image; data usually lives on tmpfs anyway.
  local -a initdb=(initdb --username="$user" --auth-local=trust --auth-host="$auth"
    --encoding=UTF8 --locale=C.UTF-8 --no-sync --no-instructions)
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a word list, as in the official image
  if [[ -n ${POSTGRES_PASSWORD:-} ]]; then
    "${initdb[@]}" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") ${POSTGRES_INITDB_ARGS:-}
  else
    "${initdb[@]}" ${POSTGRES_INITDB_ARGS:-}
  fi
  printf '\nlisten_addresses = '"'*'"'\n' >>"$PGDATA/postgresql.conf"
  printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

  # Temporary server, unix socket only, with the caller's server options. pg_ctl sends its log to
  # stdout: that is where the official image prints its first ready line.
  pg_ctl -D "$PGDATA" -w start -o "$(printf '%q ' "${@:2}" -c listen_addresses= -p 5432)"
  if [[ $db != postgres ]]; then
    psql_init --dbname postgres --set db="$db" <<<'CREATE DATABASE :"db";'
  fi
  local f
  for f in /docker-entrypoint-initdb.d/*; do
    [[ -e $f ]] || continue
    case $f in
      # shellcheck source=/dev/null
      *.sh) if [[ -x $f ]]; then "$f"; else . "$f"; fi ;;
      *.sql) psql_init --dbname "$db" -f "$f" ;;
      *.sql.gz) gzip -dc "$f" | psql_init --dbname "$db" ;;
      *) echo "ignoring $f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop
  echo 'PostgreSQL init process complete; ready for start up.'
}

if [[ ! -s $PGDATA/PG_VERSION ]]; then
  init_cluster "$@"
fi
# The final server replaces this script (PID 1), so `docker stop` (SIGINT: fast shutdown) reaches it.
exec "$@"
ENTRYPOINT
  chmod 755 "$1"
}

build() {
  local suite mirror signed line
  suite=$(debian_suite)
  # PGFRESH_DEBIAN_MIRROR, else the apt source of that suite, else (trixie on a bookworm host)
  # the one of the host's suite: a Debian mirror carries the other suites of the archive too.
  line=$(debian_mirror "$suite") || die "no Debian mirror to bootstrap '$suite' from"
  mirror=${line%%$'\t'*} signed=${line#*$'\t'}
  local -a keyring=()
  # debootstrap checks with gpgv, which reads binary keyrings only.
  if [[ $signed == *.gpg && -r $signed ]]; then
    keyring=("$signed")
  fi

  command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
  rootfs=$(mktemp -d "${TMPDIR:-/var/tmp}/pgfresh-rootfs.XXXXXX")
  log "debootstrap $suite from $mirror into $rootfs (postgresql-$pg_major)"
  debootstrap --variant=minbase "${keyring[@]/#/--keyring=}" --include="postgresql-$pg_major" \
    "$suite" "$rootfs" "$mirror" >&2 ||
    die "debootstrap $suite failed (above). postgresql-$pg_major must be in $suite main (15: bookworm, \
17: trixie); a suite newer than the host's needs its signing keys in the keyring (${keyring[*]:-the default of debootstrap}) \
(update debian-archive-keyring) and a debootstrap that knows it (/usr/share/debootstrap/scripts/$suite)"

  local pgbin=/usr/lib/postgresql/$pg_major/bin
  [[ -x $rootfs$pgbin/postgres ]] || die "postgresql-$pg_major did not install $pgbin/postgres"

  log "trimming the tree"
  # The Debian cluster the package's postinst may have created; the entrypoint makes its own.
  rm -rf "$rootfs/etc/postgresql/$pg_major" "$rootfs/var/lib/postgresql/$pg_major"
  # Caches, docs, translations.
  rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/debconf/*-old \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/lintian "$rootfs"/var/log/*.log \
    "$rootfs"/var/log/apt/* "$rootfs"/tmp/*
  # JIT: libLLVM is by far the largest file and only llvmjit.so loads it; without them the server
  # runs with JIT unavailable (jit=on has no effect), which is what a test image wants.
  rm -rf "$rootfs/usr/lib/postgresql/$pg_major/lib/llvmjit.so" \
    "$rootfs/usr/lib/postgresql/$pg_major/lib/llvmjit_types.bc" \
    "$rootfs/usr/lib/postgresql/$pg_major/lib/bitcode"
  # libLLVM-14.so.1 (bookworm), libLLVM.so.19.1 (trixie).
  rm -f "$rootfs"/usr/lib/*/libLLVM[.-]*so* "$rootfs"/usr/lib/*/libz3.so*   # z3: used by LLVM only
  # Locale sources for localedef; the server uses the compiled-in C.UTF-8.
  rm -rf "$rootfs/usr/share/i18n"

  install -d -m 755 "$rootfs/docker-entrypoint-initdb.d"
  write_entrypoint "$rootfs$entrypoint"

  log "importing as $ref"
  tar -C "$rootfs" --numeric-owner --one-file-system -c . |
    docker import \
      -c "ENTRYPOINT [\"$entrypoint\"]" \
      -c 'CMD ["postgres"]' \
      -c "ENV PATH=$pgbin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
      -c 'ENV PGDATA=/var/lib/postgresql/data' \
      -c 'ENV LANG=C.UTF-8' \
      -c 'EXPOSE 5432' \
      -c "LABEL org.pgfresh.offline.suite=$suite org.pgfresh.offline.mirror=$mirror" \
      -m "debootstrap $suite postgresql-$pg_major from $mirror" \
      - "$import_tag" >&2
  # `docker import -c` does not take STOPSIGNAL. SIGINT is PostgreSQL's fast shutdown; the default
  # SIGTERM is a smart shutdown, which waits for every client (an open pool keeps `docker stop` at
  # its 10 s timeout). The classic builder adds it from the local image, no registry involved.
  printf 'FROM %s\nSTOPSIGNAL SIGINT\n' "$import_tag" | DOCKER_BUILDKIT=0 docker build -q -t "$ref" - >&2
  docker image rm "$import_tag" >/dev/null
}

main() {
  [[ $(id -u) == 0 ]] || die "run as root (debootstrap needs it)"
  docker info >/dev/null 2>&1 || die "no Docker daemon answers: start dockerd first"
  # One build at a time per machine; a concurrent caller waits, then reuses the image.
  exec 9>/var/lock/pgfresh-offline-image.lock
  flock 9
  if image_exists "$ref"; then
    log "reusing existing image $ref"
  else
    local start=$SECONDS
    build
    cleanup
    log "built $ref in $((SECONDS - start)) s"
  fi
  printf '%s\n' "$ref" >&3
}

main
