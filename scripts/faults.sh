#!/usr/bin/env bash
# The next run always works: faults injected into real processes, then the quickstart and the
# 100-test suite of examples/hundred (cargo nextest run) must pass, and the server must hold no
# leftovers (only templates and ready clones).
#
#   1. `pgfresh gc` right after a run, while its broker lingers;
#   2. the local postmaster SIGKILLed while the broker lingers;
#   3. a DB_URL server restarted (`pg_ctl restart -m fast`) while the broker lingers;
#   4. the broker SIGKILLed in the middle of a run (tests in flight may fail, each with a
#      message that names the broker);
#   5. the run directory deleted by hand while the broker lingers;
#   then the chaos runs: CHAOS_RUNS (5) runs of the suite while a loop kills, at random moments,
#   one of the broker, a test process, the postmaster; each run's failures are counted and every
#   one must name what died; then a clean run passes 100/100 with no leftovers.
#
# Usage:  scripts/faults.sh            (PostgreSQL binaries as the local source finds them;
#                                       PGFRESH_PG_BIN to choose)
# Everything runs in a private PGFRESH_RUN_DIR under a fresh temporary directory, removed (with
# its clusters, by `pgfresh gc`) at the end.
set -euo pipefail

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
cd -- "$repo"
target=${CARGO_TARGET_DIR:-$repo/target}
chaos_runs=${CHAOS_RUNS:-5}

work=$(mktemp -d /tmp/pgfresh-faults.XXXXXX)
# The clusters run as `postgres` when this runs as root: they must reach their run directories.
chmod 755 "$work"
mkdir -m 755 "$work/run" "$work/url-run" "$work/url-server"
export PGFRESH_SERVER=local PGFRESH_RUN_DIR=$work/run
unset DB_URL DATABASE_URL PGFRESH_IMAGE

say() { printf '\n=== faults: %s\n' "$*"; }
fail() { printf 'faults: FAILED: %s\n' "$*" >&2; exit 1; }

cleanup() {
  local rc=$?
  [[ -n ${chaos_pid:-} ]] && kill "$chaos_pid" 2>/dev/null
  for dir in "$work/run" "$work/url-run" "$work/url-server"; do
    PGFRESH_RUN_DIR=$dir "$pgfresh" gc >/dev/null 2>&1 || true
  done
  rm -rf -- "$work"
  exit "$rc"
}
pgfresh=$target/debug/pgfresh
quickstart_bin=$target/debug/examples/quickstart
trap cleanup EXIT

say "building the quickstart, the pgfresh command and the 100-test suite"
cargo build --quiet --example quickstart --bin pgfresh
cargo nextest run --cargo-quiet -p pgfresh-hundred --no-run

# --- the pieces --------------------------------------------------------------------------------
quickstart() { "$quickstart_bin" >"$work/quickstart.log" 2>&1 || { cat "$work/quickstart.log"; fail "the quickstart, after $1"; }; }

# start_suite: runs the hundred tests in the background ($suite_pid).
start_suite() {
  cargo nextest run --cargo-quiet -p pgfresh-hundred --profile faults >"$work/suite.log" 2>&1 &
  suite_pid=$!
}
# report LABEL: once the suite ended, how many tests ran ($total) and failed ($failed), each
# failure as `name<TAB>what it printed` in $work/failures (from nextest's JUnit report).
report() {
  wait "$suite_pid" || true
  local junit=$target/nextest/faults/junit.xml
  [[ -f $junit ]] || { tail -n 30 "$work/suite.log"; fail "no JUnit report from the suite ($1)"; }
  total=$(python3 - "$junit" "$work/failures" <<'PY'
import sys, xml.etree.ElementTree as ET
cases = list(ET.parse(sys.argv[1]).iter("testcase"))
with open(sys.argv[2], "w") as out:
    for case in cases:
        bad = next((e for e in case if e.tag in ("failure", "error")), None)
        if bad is not None:
            text = [bad.get("message"), bad.get("type"), bad.text]
            text += [e.text for e in case if e.tag in ("system-out", "system-err")]
            out.write(case.get("name") + "\t" + " ".join(" ".join(filter(None, text)).split()) + "\n")
print(len(cases))
PY
)
  failed=$(grep -c . "$work/failures" || true)
  echo "suite ($1): $total tests, $failed failed"
  [[ $total == 100 ]] || fail "the suite ran $total tests, not 100 ($1)"
}
suite() { start_suite; report "$1"; }

# clean_run LABEL [URL]: the quickstart, then the suite 100/100, then no leftovers on the
# server (URL, else the local cluster).
clean_run() {
  quickstart "$1"
  echo "quickstart passed ($1)"
  suite "$1"
  if ((failed)); then cat "$work/failures"; fail "the run after $1 had $failed failed tests"; fi
  no_leftovers "$1" "${2:-}"
}

# The run directory of the local cluster of $PGFRESH_RUN_DIR (or of the directory given).
cluster_dir() { # cluster_dir [RUN_DIR]
  local dirs=("${1:-$PGFRESH_RUN_DIR}"/pgfresh-*-local-*)
  [[ -d ${dirs[0]} ]] && echo "${dirs[0]}"
}
state_field() { # state_field KEY [RUN_DIR]: a field of that cluster's state file
  local dir
  dir=$(cluster_dir "${2:-}") && sed -n "s/^$1=//p" "$dir/state"
}
server_url() { # server_url [RUN_DIR]
  local port password
  port=$(state_field port "${1:-}") && password=$(state_field password "${1:-}") || return 1
  [[ -n $port && -n $password ]] || return 1
  echo "postgres://postgres:$password@127.0.0.1:$port/postgres"
}
postmaster_pid() { head -n1 "$(cluster_dir)/data/postmaster.pid"; }

# Processes: the brokers serving this script's run directories, and the suite's test processes.
environ() { { tr '\0' '\n' <"/proc/$1/environ"; } 2>/dev/null; } # environ PID
brokers() {
  local env pid vars
  for env in /proc/[0-9]*/environ; do
    pid=${env#/proc/}
    pid=${pid%/environ}
    vars=$(environ "$pid")
    grep -q '^PGFRESH_BROKER_SERVE=' <<<"$vars" &&
      grep -qx "PGFRESH_RUN_DIR=$work/[a-z-]*" <<<"$vars" && echo "$pid"
  done
  return 0
}
test_processes() {
  local pid
  for pid in $(pgrep -f '/deps/hundred-[0-9a-f]+ ' || true); do
    environ "$pid" | grep -q '^PGFRESH_BROKER_SERVE=' || echo "$pid"
  done
}

# no_leftovers LABEL [URL]: within 30 s (drops in flight, the brokers giving their clones made
# ahead back), the server holds only templates and ready clones.
no_leftovers() {
  local url=${2:-} listing i
  [[ -n $url ]] || url=$(server_url) || fail "no running cluster to inspect ($1)"
  for ((i = 0; i < 60; i++)); do
    listing=$("$pgfresh" gc --dry-run --database-url "$url" | grep '^would remove database' || true)
    if ! grep -qvE '\((template|ready)\)$' <<<"$listing"; then
      echo "no leftovers ($1): $(grep -c . <<<"$listing") templates and ready clones"
      return
    fi
    sleep 0.5
  done
  grep -vE '\((template|ready)\)$' <<<"$listing"
  fail "leftovers on the server after $1"
}

# A broker that lingers after the quickstart: the fault strikes while it does.
lingering_broker() {
  quickstart "a first run"
  [[ -n $(brokers) ]] || fail "no broker lingers after the quickstart"
}

# --- 1-5: one fault, then the next run ----------------------------------------------------------
say "1. pgfresh gc right after a run, while its broker lingers"
lingering_broker
"$pgfresh" gc | tee "$work/gc.log"
grep -q '^removing running broker of' "$work/gc.log" || fail "gc did not end the broker"
[[ -z $(brokers) ]] || fail "a broker outlived gc"
clean_run "pgfresh gc"

say "2. the postmaster SIGKILLed while the broker lingers"
lingering_broker
kill -KILL "$(postmaster_pid)"
clean_run "the postmaster killed"

say "3. a DB_URL server restarted (pg_ctl restart -m fast) while the broker lingers"
# The url server: a cluster of its own (pgfresh's local source, kept up), named by DB_URL.
PGFRESH_RUN_DIR=$work/url-server PGFRESH_LINGER=forever "$quickstart_bin" >/dev/null
url=$(server_url "$work/url-server") || fail "the url server did not start"
# shellcheck disable=SC2030 # this case's environment, in its own subshell
(
  export PGFRESH_SERVER=url DB_URL=$url PGFRESH_RUN_DIR=$work/url-run
  lingering_broker
  data=$(cluster_dir "$work/url-server")/data
  pg_ctl=$(state_field handle "$work/url-server")
  as_owner=()
  [[ $(id -u) == 0 ]] && as_owner=(runuser -u "$(stat -c %U "$data")" --)
  "${as_owner[@]}" "$pg_ctl" -D "$data" restart -m fast -w >/dev/null
  clean_run "the DB_URL server restarted" "$url"
)

say "4. the broker SIGKILLed in the middle of a run"
suite "before the broker kill (the template built)"
start_suite
for ((i = 0; i < 100; i++)); do [[ -n $(brokers) ]] && break; sleep 0.1; done
sleep 2
victims=$(brokers)
[[ -n $victims ]] || fail "no broker to kill in the middle of the run"
# shellcheck disable=SC2086 # one pid per word
kill -KILL $victims
echo "killed broker $victims in the middle of the run"
report "the run the broker died in"
cut -c1-400 "$work/failures"
if grep -v 'broker' "$work/failures"; then fail "a test failed without naming the broker"; fi
clean_run "the broker killed"

say "5. the run directory deleted by hand while the broker lingers"
lingering_broker
orphan=$(postmaster_pid)
# The running server may make a file while rm walks the tree: as a user would, try again.
doomed=$(cluster_dir)
for ((i = 0; i < 10; i++)); do rm -rf -- "$doomed" 2>/dev/null && break; sleep 0.1; done
[[ ! -e $doomed ]] || fail "could not delete $doomed"
clean_run "the run directory deleted"
# The orphaned postmaster would stop by itself once it checks its lock file (within a minute).
kill -KILL "$orphan" 2>/dev/null || true

# --- chaos ----------------------------------------------------------------------------------------
say "chaos: $chaos_runs runs of the suite while a loop kills the broker, a test or the postmaster"
# What a failure must say, per thing killed: its name, or what its death looks like to a test.
declare -A names=(
  [broker]='broker'
  [test]='SIGKILL|signal 9'
  [postmaster]='PostgreSQL|server|[Cc]onnection|terminating|UnexpectedEof|end of file'
)
for ((run = 1; run <= chaos_runs; run++)); do
  : >"$work/killed"
  start_suite
  (
    for ((k = 0; k < 3; k++)); do
      sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.1f", 1 + (r % 25) / 10 }')"
      kill -0 "$suite_pid" 2>/dev/null || exit 0
      kind=$(shuf -n1 -e broker test postmaster)
      case $kind in
        broker) victim=$(brokers | head -n1) ;;
        test) victim=$(test_processes | shuf -n1) ;;
        postmaster) victim=$(postmaster_pid 2>/dev/null || true) ;;
      esac
      [[ -n $victim ]] || continue
      kill -KILL "$victim" 2>/dev/null && echo "$kind" >>"$work/killed"
    done
  ) &
  chaos_pid=$!
  report "chaos run $run"
  wait "$chaos_pid" || true
  chaos_pid=
  killed=$(sort "$work/killed" | uniq -c | awk '{ printf "%s%s x%s", sep, $2, $1; sep=", " }')
  echo "chaos run $run: killed ${killed:-nothing}; $failed of 100 failed"
  cut -c1-400 "$work/failures"
  pattern=$(sort -u "$work/killed" | while read -r kind; do printf '%s|' "${names[$kind]}"; done)
  pattern=${pattern%|}
  if [[ -s $work/failures ]]; then
    [[ -n $pattern ]] || { cat "$work/failures"; fail "tests failed with nothing killed"; }
    if grep -vE "$pattern" "$work/failures"; then fail "a failure does not name what died"; fi
  fi
done
clean_run "the chaos runs"
say "passed"
