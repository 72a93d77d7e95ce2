#!/usr/bin/env bash
# Create (or reuse) a Python virtualenv holding the pinned Alembic toolchain of examples/alembic/.
#
# Usage:  scripts/alembic-venv.sh [VENV_DIR]
#         PATH="$(scripts/alembic-venv.sh | tail -n1):$PATH" alembic -c examples/alembic/alembic.ini check
#
# VENV_DIR defaults to target/alembic-venv under the repository root (a relative VENV_DIR is taken
# relative to the current directory). The venv is reused as is when it was built from the same
# requirements file (a stamp in it holds that file's sha256) and its packages still import;
# otherwise it is (re)created and `pip install -r examples/alembic/requirements.txt` runs in it.
# Progress goes to stderr; the last line on stdout is the venv's bin directory alone.
#
# Works as root and as an unprivileged user (it writes only under VENV_DIR). pip uses whatever index
# the machine's pip configuration names. Optional environment:
#   PYTHON   the interpreter to build the venv from (default: python3 on PATH; needs the venv module)
set -euo pipefail

# Everything but the final bin directory goes to stderr.
exec 3>&1 1>&2

log() { printf 'alembic-venv: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

repo_root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
requirements=$repo_root/examples/alembic/requirements.txt
[[ -f $requirements ]] || die "no requirements file at $requirements"

venv=${1:-$repo_root/target/alembic-venv}
python=${PYTHON:-python3}
command -v "$python" >/dev/null 2>&1 || die "no '$python' on PATH (set PYTHON to a Python 3 interpreter)"

mkdir -p -- "$(dirname -- "$venv")"
venv=$(cd -- "$(dirname -- "$venv")" && pwd -P)/$(basename -- "$venv")
bin=$venv/bin
stamp=$venv/.pgfresh-requirements.sha256

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum -- "$1" | cut -d' ' -f1
  else
    "$python" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"
  fi
}
want=$(sha256_of "$requirements")

# Two runs at once (parallel test processes) must not build the same venv together.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$venv.lock"
  flock 9
fi

healthy() {
  [[ -x $bin/python && -x $bin/alembic && -f $stamp ]] &&
    [[ $(cat -- "$stamp") == "$want" ]] &&
    "$bin/python" -c 'import alembic, sqlalchemy, psycopg' >/dev/null 2>&1
}

if healthy; then
  log "reusing $venv (requirements unchanged)"
else
  if [[ -e $venv ]]; then
    # Only ever delete a directory that is a virtualenv (or empty), never whatever a typo named.
    if [[ -f $venv/pyvenv.cfg ]] || [[ -d $venv && -z $(ls -A -- "$venv") ]]; then
      log "rebuilding $venv (requirements changed or venv incomplete)"
      rm -rf -- "$venv"
    else
      die "$venv exists and is not a virtualenv; remove it or pass another directory"
    fi
  fi
  log "creating $venv with $("$python" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
  "$python" -m venv -- "$venv" || die "'$python -m venv' failed (on Debian: apt-get install python3-venv)"
  log "installing $requirements"
  "$bin/python" -m pip install --disable-pip-version-check --no-input --quiet -r "$requirements"
  healthy_imports=$("$bin/python" -c 'import alembic, sqlalchemy, psycopg; print("alembic", alembic.__version__, "sqlalchemy", sqlalchemy.__version__, "psycopg", psycopg.__version__, psycopg.pq.__impl__)')
  log "installed: $healthy_imports"
  # Written last: an interrupted install leaves no stamp, so the next run starts over.
  printf '%s\n' "$want" >"$stamp"
fi

printf '%s\n' "$bin" >&3
