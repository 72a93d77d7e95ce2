#!/usr/bin/env bash
# Compile-check (`cargo check`, no linking) the library for other targets than this machine's: macOS
# and Windows by default. rustup cannot download another target's std here (only the Debian mirror
# and crates.io are reachable), so std is built from source instead (`-Zbuild-std`), with Debian
# sid's rustc, cargo and rust-src in a chroot: a stable rustc accepts -Z flags under
# RUSTC_BOOTSTRAP=1, and Debian's rust-src ships the library sources that build-std needs.
#
# Usage:  scripts/cross-check.sh [TARGET...]
#         (default: aarch64-apple-darwin x86_64-apple-darwin x86_64-pc-windows-msvc)
#
# Checks `--lib -p pgfresh -p pgfresh-macros --no-default-features --features docker,local,cli`.
# Left out: the `tls` and `embedded` features. Both pull `ring` (rustls), whose build script compiles
# C and assembly for the target, which needs a cross C toolchain (and the target's SDK headers) that
# this machine has not. The proc-macro crate and every build script are built for the host (Linux)
# with the chroot's own prebuilt std and gcc, as in any cross build.
#
# Per target it prints the number of errors (the `error[...]:` / `error:` lines of rustc and cargo,
# without cargo's closing "could not compile" lines), the first ones with file:line, the crates that
# failed, and the paths of the full log and of the list of distinct errors (LOG_DIR/TARGET.log,
# LOG_DIR/TARGET.errors), and the warnings in pgfresh's own code (dependencies' are capped by cargo).
# Exits 1 when any target has errors or warnings (or cargo failed), 2 on a setup failure.
#
# The chroot is built once (debootstrap --variant=minbase, then apt-get install rustc cargo
# rust-src without recommends; a minute or a few, ~900 MB) into a temporary directory renamed into
# place once complete, under a lock: a re-run, or a concurrent one, reuses it; `rm -rf ROOT`
# rebuilds it. Each run copies the work tree (without target/ and .git) into ROOT-src, so cargo may update the copy's
# Cargo.lock without touching the repository, and runs cargo in a private mount namespace
# (`unshare -m`: nothing stays mounted afterwards) on a read-only view of the chroot, with a
# persistent CARGO_HOME (ROOT-cargo) and target directory (ROOT-target): a re-run is incremental.
# The host's cargo configuration (~/.cargo/config.toml), when there is one, is used in the chroot,
# and so is its CA bundle. The first check of a target builds its std and the crates (~1-2 min
# each on 2 cores); a re-run with no change takes seconds.
#
# Needs root, debootstrap, unshare, flock, and network access to a Debian mirror and crates.io.
# Environment:
#   PGFRESH_CROSS_FEATURES  comma-separated features to check (default: docker,local,cli; empty: none,
#                           i.e. --no-default-features alone)
#   PGFRESH_CROSS_ROOT      the chroot (default /var/cache/pgfresh/sid-rust); ROOT-cargo, ROOT-target,
#                           ROOT-src and ROOT.lock beside it
#   PGFRESH_CROSS_LOGS      LOG_DIR (default ${TMPDIR:-/tmp}/pgfresh-cross-check)
#   PGFRESH_DEBIAN_MIRROR   mirror URL (default: the apt source of the host's suite; a mirror that
#                           serves bookworm serves sid too). See scripts/lib/apt-mirror.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib/apt-mirror.sh
. "$here/lib/apt-mirror.sh"

suite=sid
packages=(rustc cargo rust-src)
default_targets=(aarch64-apple-darwin x86_64-apple-darwin x86_64-pc-windows-msvc)
root=${PGFRESH_CROSS_ROOT:-/var/cache/pgfresh/sid-rust}
root=${root%/}
cargo_home=$root-cargo
target_dir=$root-target
src_copy=$root-src
logs=${PGFRESH_CROSS_LOGS:-${TMPDIR:-/tmp}/pgfresh-cross-check}
features=${PGFRESH_CROSS_FEATURES-docker,local,cli}
marker=.pgfresh-cross-ready # in the chroot's top directory, written last
shown_errors=10             # errors printed per target; the .errors file has them all

log() { printf 'cross-check: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 2
}

# --- timings ------------------------------------------------------------------------------------
now_ds() { # tenths of a second since the epoch
  local t=${EPOCHREALTIME/[.,]/}
  printf '%s\n' $((10#$t / 100000))
}
fmt_ds() { printf '%d.%d s' $(($1 / 10)) $(($1 % 10)); }
t_start=$(now_ds)
timings=()
record() { # record TITLE START: a phase that started at START (now_ds)
  local d=$(($(now_ds) - $2))
  timings+=("$(printf '%9s  %s' "$(fmt_ds "$d")" "$1")")
  log "$1: $(fmt_ds "$d")"
}
print_timings() {
  ((${#timings[@]})) || return 0
  printf '\n== timings (total %s)\n' "$(fmt_ds $(($(now_ds) - t_start)))"
  printf '%s\n' "${timings[@]}"
}

# --- the chroot ---------------------------------------------------------------------------------
# Runs inside a new mount namespace: ROOT MODE BIND... -- COMMAND... MODE is rw (the tree as is) or
# ro (the tree bound read-only, a tmpfs on /tmp, the host's CA bundle). BIND is SRC:DST or
# SRC:DST:ro, DST a directory inside ROOT. /proc, /dev and /etc/resolv.conf come from the host.
# shellcheck disable=SC2016 # expanded by the inner shell
ns_script='
root=$1 mode=$2
shift 2
if [[ $mode == ro ]]; then
  mount --bind "$root" "$root"
  mount -o remount,bind,ro "$root"
  mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
fi
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
# The trusted roots of the host may hold a local CA (a TLS-inspecting proxy) unknown to the chroot.
ca=/etc/ssl/certs/ca-certificates.crt
if [[ $mode == ro && -f $ca && -f $root$ca ]]; then
  mount --bind "$ca" "$root$ca"
  mount -o remount,bind,ro "$root$ca"
fi
while [[ $1 != -- ]]; do
  IFS=: read -r src dst opt <<<"$1"
  shift
  mount --bind "$src" "$root$dst"
  if [[ $opt == ro ]]; then mount -o remount,bind,ro "$root$dst"; fi
done
shift
exec chroot "$root" "$@"
'
chroot_run() { # chroot_run ROOT MODE BIND... -- COMMAND...
  unshare --mount --propagation private -- bash -euo pipefail -c "$ns_script" chroot_run "$@"
}

# Remove a (partial) chroot. Everything is mounted in private namespaces, so nothing should be
# mounted below it; unmount whatever is all the same, and never let rm cross into another file system.
remove_tree() {
  local m
  awk -v r="$1" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do umount -l "$m" || true; done
  rm -rf --one-file-system "$1"
}

building=
on_exit() {
  local rc=$?
  if [[ -n $building && -d $building ]]; then
    log "removing the incomplete chroot $building"
    remove_tree "$building"
  fi
  print_timings >&2
  exit "$rc"
}
trap on_exit EXIT

build_root() {
  local line mirror signed tmp d
  command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
  line=$(debian_mirror "$suite") || die "no Debian mirror for $suite"
  mirror=${line%%$'\t'*} signed=${line#*$'\t'}
  local -a keyring=()
  # debootstrap checks with gpgv, which reads binary keyrings only. A keyring for the host's suite
  # does for sid: the archive's current keys sign every suite.
  if [[ $signed == *.gpg && -r $signed ]]; then
    keyring=("--keyring=$signed")
  fi

  for d in "$root".tmp.*; do # left by a run that was killed
    if [[ -d $d ]]; then remove_tree "$d"; fi
  done
  [[ ! -e $root ]] || remove_tree "$root" # a chroot without its marker: incomplete
  tmp=$(mktemp -d "$root.tmp.XXXXXX")
  building=$tmp

  local start
  start=$(now_ds)
  log "debootstrap $suite from $mirror into $tmp"
  # In a mount namespace of its own: whatever debootstrap leaves mounted goes away with it.
  unshare --mount --propagation private -- \
    debootstrap --variant=minbase --include=ca-certificates "${keyring[@]}" "$suite" "$tmp" "$mirror" >&2 ||
    die "debootstrap $suite failed (above)"
  record "chroot: debootstrap" "$start"

  start=$(now_ds)
  # A mirror snapshot may serve a sid Release past its Valid-Until; recommends are not needed.
  cat >"$tmp/etc/apt/apt.conf.d/90pgfresh-cross" <<'EOF'
// scripts/cross-check.sh
Acquire::Check-Valid-Until "false";
APT::Sandbox::User "root";
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF
  cat >"$tmp/etc/dpkg/dpkg.cfg.d/90pgfresh-cross-nodoc" <<'EOF'
# scripts/cross-check.sh: no documentation
path-exclude=/usr/share/doc/*
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
EOF
  # Bind mount points: the host's resolv.conf, the work tree, CARGO_HOME, the target directory.
  rm -f "$tmp/etc/resolv.conf"
  : >"$tmp/etc/resolv.conf"
  mkdir -p "$tmp/pgfresh/src" "$tmp/pgfresh/cargo" "$tmp/pgfresh/target"

  log "apt-get install ${packages[*]}"
  chroot_run "$tmp" rw -- /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive sh -ec '
      apt-get -q -o Acquire::Check-Valid-Until=false update
      apt-get -q -y -o Acquire::Check-Valid-Until=false install --no-install-recommends "$@"
      apt-get clean' sh "${packages[@]}" >&2 ||
    die "apt-get install ${packages[*]} in the chroot failed (above)"
  rm -rf "$tmp"/var/lib/apt/lists/* "$tmp"/var/cache/apt/* "$tmp"/var/log/apt/* "$tmp"/var/log/*.log \
    "$tmp"/usr/share/doc/* "$tmp"/usr/share/man/* "$tmp"/usr/share/info/* "$tmp"/usr/share/locale/* \
    "$tmp"/tmp/*
  # rust-src: build-std reads library/ only; src/ (tools, docs) and compiler/ are 80 % of it.
  rm -rf "$tmp"/usr/src/rustc-*/src "$tmp"/usr/src/rustc-*/compiler
  record "chroot: apt-get install ${packages[*]}" "$start"

  # build-std needs the library sources (with their Cargo.lock) in rustc's sysroot, and host
  # proc macros and build scripts need a linker.
  local info
  # shellcheck disable=SC2016 # expanded in the chroot
  info=$(chroot_run "$tmp" rw -- /usr/bin/env -i PATH=/usr/bin:/bin sh -ec '
    rustc -V; cargo -V
    src=$(rustc --print sysroot)/lib/rustlib/src/rust/library
    for f in Cargo.lock core/src/lib.rs std/src/lib.rs; do
      test -f "$src/$f" || { echo "no $src/$f (rust-src)" >&2; exit 1; }
    done
    cc --version | head -n1') || die "the chroot lacks part of the toolchain (above)"
  printf '%s\nmirror %s\nbuilt %s\n' "$info" "$mirror" "$(date -u +%FT%TZ)" >"$tmp/$marker"
  mv -T "$tmp" "$root"
  building=
  log "chroot ready: $root ($(du -sh --one-file-system "$root" | cut -f1)): $(head -n2 "$root/$marker" | paste -sd' ')"
}

ensure_root() {
  if [[ -f $root/$marker ]]; then
    log "reusing $root: $(head -n2 "$root/$marker" | paste -sd' ')"
    return
  fi
  local start
  start=$(now_ds)
  build_root
  record "chroot: total build" "$start"
}

# --- the check ----------------------------------------------------------------------------------
# The work tree, as it is now, into ROOT-src: without .git and cargo's target directories (they
# hold a CACHEDIR.TAG). Every file gets the time of the copy (--touch): cargo's fingerprints compare
# modification times with those of its last build, which may have been made from another tree (a
# CI clone) after a file here was edited, or in the same second (tar keeps whole seconds). So
# pgfresh itself is checked again on every run (seconds); the dependencies and std are not.
stage_sources() {
  rm -rf --one-file-system "$src_copy"
  rm -f "$logs/Cargo.lock.orig"
  mkdir -p "$src_copy"
  tar -C "$repo" --exclude-vcs --exclude-caches-all --exclude=./target -cf - . | tar -C "$src_copy" --touch -xf -
  if [[ -f $src_copy/Cargo.lock ]]; then cp -p "$src_copy/Cargo.lock" "$logs/Cargo.lock.orig"; fi
}

# The host's cargo configuration, if any, as the chroot's CARGO_HOME/config.toml.
host_cargo_config() {
  local dir=${CARGO_HOME:-$HOME/.cargo} f
  rm -f "$cargo_home/config.toml" "$cargo_home/config"
  for f in "$dir/config.toml" "$dir/config"; do
    if [[ -f $f ]]; then
      log "using the host's cargo configuration $f"
      cp "$f" "$cargo_home/config.toml"
      return
    fi
  done
}

# Errors in a cargo log, one per line as "FILE:LINE<TAB>error[CODE]: MESSAGE" (FILE:LINE is "-" for
# an error that names no place). Paths into CARGO_HOME's registry and into the library sources are
# shortened to crate-version/... and library/...
parse_errors() {
  awk '
    function flush() { if (msg != "") print "-\t" msg; msg = "" }
    msg != "" && /^ *--> / {
      loc = $2; sub(/:[0-9]+$/, "", loc)            # drop the column
      print loc "\t" msg; msg = ""; next
    }
    { flush() }
    /^error(\[[A-Z0-9]+\])?: / && !/^error: could not compile / { msg = $0 }
    END { flush() }' "$1" |
    sed -E 's#^/pgfresh/cargo/registry/src/[^/]+/##; s#^[^\t]*/rustlib/src/rust/library/#library/#'
}

# The crates cargo gave up on, space-separated.
failed_crates() {
  # shellcheck disable=SC2016 # backquotes, not an expansion
  sed -nE 's/^error: (could not compile|failed to run custom build command for) `([^`]+)`.*/\2/p' "$1" |
    sort -u | paste -sd' '
}

results=()
status=0
check_target() {
  local t=$1 log=$logs/$1.log errs=$logs/$1.errors start rc=0 n distinct crates warnings
  local -a cmd=(cargo check --lib -p pgfresh -p pgfresh-macros --no-default-features)
  if [[ -n $features ]]; then cmd+=(--features "$features"); fi
  # shellcheck disable=SC2054 # one argument
  cmd+=(--target "$t" -Zbuild-std=std,panic_abort --color=never)
  local -a env=(PATH=/usr/bin:/bin HOME=/root LC_ALL=C.UTF-8 RUSTC_BOOTSTRAP=1
    CARGO_HOME=/pgfresh/cargo CARGO_TARGET_DIR=/pgfresh/target CARGO_TERM_COLOR=never
    CARGO_TERM_PROGRESS_WHEN=never)
  local v
  for v in CARGO_BUILD_JOBS CARGO_HTTP_TIMEOUT CARGO_NET_RETRY http_proxy https_proxy HTTPS_PROXY no_proxy NO_PROXY; do
    if [[ -n ${!v:-} ]]; then env+=("$v=${!v}"); fi
  done

  log "$t: ${cmd[*]}  (log: $log)"
  start=$(now_ds)
  {
    printf '# %s\n# features: %s\n' "${cmd[*]}" "${features:-(none)}"
    chroot_run "$root" ro "$src_copy:/pgfresh/src" "$cargo_home:/pgfresh/cargo" "$target_dir:/pgfresh/target" -- \
      /usr/bin/env -i -C /pgfresh/src "${env[@]}" "${cmd[@]}" 2>&1 || rc=$?
  } >"$log"
  record "check $t" "$start"

  parse_errors "$log" >"$errs.all"
  n=$(wc -l <"$errs.all")
  awk '!seen[$0]++' "$errs.all" | tr '\t' ' ' >"$errs" # distinct, in order of appearance
  rm -f "$errs.all"
  distinct=$(wc -l <"$errs")
  crates=$(failed_crates "$log")
  # rustc's own warnings, not cargo's "`pgfresh` (lib) generated N warnings" summary.
  warnings=$(grep -E '^warning: ' "$log" | grep -cvE 'generated [0-9]+ warnings?' || true)

  printf '\n== %s: %d errors (%d distinct), %d warnings, cargo exit %d, %s\n' "$t" "$n" "$distinct" \
    "$warnings" "$rc" "$(fmt_ds $(($(now_ds) - start)))"
  if ((distinct)); then
    head -n "$shown_errors" "$errs" | sed 's/^/  /'
    ((distinct <= shown_errors)) || printf '  ... %d more\n' $((distinct - shown_errors))
  fi
  if ((warnings)); then
    awk '/^warning: / && !/generated [0-9]+ warnings?/ { print; if ((getline) > 0 && /^ *-->/) print }' \
      "$log" | head -n $((2 * shown_errors)) | sed 's/^/  /'
  fi
  if [[ -n $crates ]]; then printf '  failed crates: %s\n' "$crates"; fi
  if ((rc != 0 && n == 0)); then
    printf '  cargo failed without a compiler error: see the log\n'
    tail -n 5 "$log" | sed 's/^/  | /'
  fi
  printf '  log: %s\n  errors: %s\n' "$log" "$errs"
  results+=("$(printf '%-28s %5d errors %3d warnings  %s' "$t" "$n" "$warnings" "${crates:+(failed: $crates)}")")
  if ((n || warnings || rc)); then status=1; fi
}

main() {
  case ${1:-} in
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
  esac
  local -a targets=("$@")
  ((${#targets[@]})) || targets=("${default_targets[@]}")
  [[ $(id -u) == 0 ]] || die "run as root (debootstrap, chroot and mount need it)"
  local c
  for c in unshare flock chroot tar; do
    command -v "$c" >/dev/null || die "$c is missing"
  done

  mkdir -p "$(dirname "$root")" "$logs"
  # One run at a time: the first builds the chroot, the others wait and reuse it (they would also
  # overwrite each other's copy of the work tree).
  exec 9>"$root.lock"
  if ! flock -n 9; then
    log "waiting for another run (lock $root.lock)"
    flock 9
  fi
  ensure_root

  local start
  start=$(now_ds)
  mkdir -p "$cargo_home" "$target_dir"
  host_cargo_config
  stage_sources
  record "copy the work tree to $src_copy" "$start"

  log "features: ${features:-(none)}; targets: ${targets[*]}"
  local t
  for t in "${targets[@]}"; do check_target "$t"; done

  if [[ -f $logs/Cargo.lock.orig ]] && ! cmp -s "$logs/Cargo.lock.orig" "$src_copy/Cargo.lock"; then
    log "note: cargo $(head -n2 "$root/$marker" | tail -n1 | cut -d' ' -f2) rewrote Cargo.lock in the copy" \
      "(the repository's is stale or in another format: diff $logs/Cargo.lock.orig $src_copy/Cargo.lock);" \
      "the repository is untouched"
  fi
  printf '\n== summary (features: %s)\n' "${features:-(none)}"
  printf '%s\n' "${results[@]}"
  return "$status"
}

main "$@"
