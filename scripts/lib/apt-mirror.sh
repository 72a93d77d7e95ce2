# shellcheck shell=bash
# Which Debian mirror to bootstrap a suite from: the one this machine's apt sources already use, so a
# script needs no mirror name of its own (the machine reaches only the mirror it is configured for).
# Sourced, not run:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib/apt-mirror.sh"
#   line=$(debian_mirror sid) || exit 1      # "URI<TAB>SIGNED-BY"
#   mirror=${line%%$'\t'*} signed=${line#*$'\t'}
#
# Environment: PGFRESH_DEBIAN_MIRROR, when set, is the mirror URL (SIGNED-BY is then empty).
# Defines host_suite, apt_sources and debian_mirror; notes go through the caller's `log` function
# when it has one, else to stderr.

# The host's own Debian release (empty when /etc/os-release does not tell).
host_suite() {
  [[ -r /etc/os-release ]] || return 0
  # shellcheck source=/dev/null
  (. /etc/os-release && printf '%s\n' "${VERSION_CODENAME:-}")
}

# Every binary ("deb") apt source serving SUITE with component main, one per line as
# "URI<TAB>SIGNED-BY" (SIGNED-BY may be empty). Reads both the one-line format
# (sources.list, sources.list.d/*.list) and the deb822 format (sources.list.d/*.sources).
apt_sources() {
  local suite=$1 f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -r $f ]] || continue
    awk -v suite="$suite" '
      { sub(/#.*/, "") }
      $1 != "deb" { next }
      {
        i = 2; signed = ""
        if ($i ~ /^\[/) {                      # [ option=value ... ]
          for (; i <= NF; i++) {
            opt = $i; gsub(/[][]/, "", opt)
            if (opt ~ /^signed-by=/) { signed = substr(opt, 11) }
            if ($i ~ /\]$/) { i++; break }
          }
        }
        uri = $i; dist = $(i + 1)
        if (dist != suite) next
        for (j = i + 2; j <= NF; j++) if ($j == "main") { printf "%s\t%s\n", uri, signed; next }
      }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -r $f ]] || continue
    awk -v suite="$suite" '
      function has(list, word,   n, k, a) { n = split(list, a, /[ \t]+/); for (k = 1; k <= n; k++) if (a[k] == word) return 1; return 0 }
      BEGIN { RS = ""; FS = "\n" }             # one paragraph per stanza
      {
        delete v; key = ""
        for (l = 1; l <= NF; l++) {
          line = $l
          if (line ~ /^#/) continue
          if (line ~ /^[ \t]/) { if (key != "") v[key] = v[key] " " line; continue }   # continuation
          p = index(line, ":"); if (!p) continue
          key = tolower(substr(line, 1, p - 1)); val = substr(line, p + 1)
          gsub(/^[ \t]+|[ \t]+$/, "", val); v[key] = val
        }
        if (tolower(v["enabled"]) == "no") next
        if (!has(v["types"], "deb") || !has(v["suites"], suite) || !has(v["components"], "main")) next
        signed = (v["signed-by"] ~ /^\//) ? v["signed-by"] : ""
        n = split(v["uris"], uris, /[ \t]+/)
        for (k = 1; k <= n; k++) if (uris[k] != "") printf "%s\t%s\n", uris[k], signed
      }' "$f"
  done
}

_apt_mirror_note() {
  if declare -F log >/dev/null; then log "$*"; else printf 'apt-mirror: %s\n' "$*" >&2; fi
}

# The mirror to bootstrap SUITE from, as "URI<TAB>SIGNED-BY": PGFRESH_DEBIAN_MIRROR, else the first apt
# source serving SUITE's main, else, for a suite the apt sources do not list (sid or trixie on a
# bookworm host), the one serving the host's own suite: a Debian mirror carries every current suite.
# Returns 1, with a note saying why, when there is none.
debian_mirror() {
  local suite=$1 host line
  if [[ -n ${PGFRESH_DEBIAN_MIRROR:-} ]]; then
    printf '%s\t\n' "$PGFRESH_DEBIAN_MIRROR"
    return
  fi
  host=$(host_suite)
  line=$(apt_sources "$suite" | head -n1)
  if [[ -z $line && -n $host && $host != "$suite" ]]; then
    line=$(apt_sources "$host" | head -n1)
    [[ -z $line ]] || _apt_mirror_note "no apt source lists '$suite main'; using the mirror of '$host main'"
  fi
  if [[ -z $line ]]; then
    local looked_for="'$suite main'"
    [[ -z $host || $host == "$suite" ]] || looked_for+=" or '$host main'"
    _apt_mirror_note "no apt source serves $looked_for (looked in /etc/apt/sources.list{,.d/*.list,.d/*.sources}); set PGFRESH_DEBIAN_MIRROR"
    return 1
  fi
  printf '%s\n' "$line"
}
