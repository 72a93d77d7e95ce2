#!/usr/bin/env bash
# Builds every Rust snippet of README.md and of the pages docs/*.md in a new crate whose
# dependencies are exactly the [dev-dependencies] the README tells a reader to add (its first
# ```toml block), with pgfresh taken from this checkout instead of the registry. A doctest inside
# pgfresh cannot show that: there, pgfresh's own dependencies (sqlx, tokio, …) are in scope too.
#
# Usage:  scripts/readme-crate.sh [MODE...]      (default: all three modes, one after the other)
#
# The crate's dependencies are resolved afresh, as a reader's would be (never from pgfresh's own
# lock file), in each MODE:
#   newest      the newest versions the requirements allow;
#   sqlx-0.9.0  the same, with sqlx held at 0.9.0 (`cargo update -p sqlx --precise 0.9.0`), the
#               oldest sqlx pgfresh accepts;
#   own-sqlx    the reader's crate depends on sqlx itself, pinned exactly (`=`) at the newest
#               0.9.x, as an application on today's sqlx does: pgfresh must resolve beside it.
# Each mode's crate is target/readme-crate/<mode>.
#
# Each ```rust block of README.md becomes tests/readme_NN.rs, and each of docs/PAGE.md
# tests/docs_PAGE_NN.rs (numbered per file in order, `-` in PAGE read as `_`), so no two names
# clash. Lines starting with `# ` are kept without the marker, as rustdoc does; a block whose first
# line is `// build.rs` becomes the crate's build.rs (one in all); ```rust,ignore blocks other than
# that are skipped. The crate gets this repository's migrations/ (the reader's own, in the README)
# and tests/fixtures/. Then `cargo test --no-run` must succeed.
set -euo pipefail

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
readme=$repo/README.md
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}

log() { printf 'readme-crate: %s\n' "$*" >&2; }

# The version of PACKAGE in the lock file of the crate at MANIFEST.
locked_version() { # locked_version MANIFEST PACKAGE
  cargo metadata --format-version 1 --manifest-path "$1" --locked |
    python3 -c 'import json, sys
name = sys.argv[1]
print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == name))' "$2"
}

write_crate() { # write_crate DIR: the crate, its snippets, migrations and fixtures, in DIR
  local crate=$1
  rm -rf "$crate"
  mkdir -p "$crate/tests" "$crate/src"
  python3 - "$readme" "$crate" "$repo" "$repo"/docs/*.md <<'EOF'
import os, re, sys, textwrap
readme, crate, repo, *pages = sys.argv[1:]
pages = [p for p in pages if os.path.isfile(p)]  # an unmatched glob stays literal
fence = re.compile(r'^([ \t]*)```([^\n]*)\n(.*?)^\1```[ \t]*$', flags=re.S | re.M)
blocks = fence.findall(open(readme).read())
toml = next((b for _, lang, b in blocks if lang.strip() == 'toml'), None)
if toml is None or '[dev-dependencies]' not in toml:
    sys.exit('readme-crate: no ```toml block with [dev-dependencies] in README.md')
deps = re.sub(r'(?m)^pgfresh\s*=.*$', f'pgfresh = {{ path = "{repo}" }}', textwrap.dedent(toml))
if 'path = ' not in deps:
    sys.exit('readme-crate: the ```toml block does not add pgfresh')
open(f'{crate}/Cargo.toml', 'w').write(
    '[package]\nname = "readme-crate"\nversion = "0.0.0"\nedition = "2024"\npublish = false\n\n'
    '# Not part of pgfresh\'s workspace, although it sits in its target directory.\n[workspace]\n\n'
    + deps)
open(f'{crate}/src/lib.rs', 'w').write(
    '//! Nothing: the snippets of the README and of docs/*.md are in tests/.\n')
build_rs = None  # the file whose `// build.rs` block became build.rs
counts = []
sources = [(readme, 'readme')] + [
    (page, 'docs_' + re.sub(r'\W', '_', os.path.basename(page)[:-len('.md')])) for page in pages
]
for source, prefix in sources:
    n = 0
    for indent, lang, body in fence.findall(open(source).read()):
        attrs = [a.strip() for a in lang.split(',')]
        if attrs[0] != 'rust':
            continue
        code = textwrap.dedent(body)
        lines = []
        for line in code.splitlines():
            stripped = line.lstrip()
            if stripped == '#' or stripped.startswith('# '):
                line = line.replace('# ', '', 1) if stripped != '#' else ''
            lines.append(line)
        code = '\n'.join(lines) + '\n'
        if code.startswith('// build.rs'):
            if build_rs is not None:
                sys.exit(f'readme-crate: a second `// build.rs` block, in {source} (the first in {build_rs})')
            build_rs = source
            open(f'{crate}/build.rs', 'w').write(code)
            continue
        if 'ignore' in attrs:
            continue
        n += 1
        open(f'{crate}/tests/{prefix}_{n:02}.rs', 'w').write(code)
    counts.append(f'{os.path.relpath(source, repo)} {n}')
print(f'readme-crate: snippets: {", ".join(counts)}', file=sys.stderr)
EOF
  cp -r "$repo/migrations" "$crate/migrations"
  mkdir -p "$crate/tests/fixtures"
  cp -r "$repo/tests/fixtures/." "$crate/tests/fixtures/"
}

build() { # build MODE: writes, resolves afresh and builds the crate of one mode
  local mode=$1 crate=$repo/target/readme-crate/$1 manifest newest
  manifest=$crate/Cargo.toml
  write_crate "$crate"
  cargo generate-lockfile --quiet --manifest-path "$manifest"
  case $mode in
    newest) ;;
    sqlx-0.9.0) cargo update --quiet --manifest-path "$manifest" -p sqlx --precise 0.9.0 ;;
    own-sqlx)
      newest=$(locked_version "$manifest" sqlx)
      cat >>"$manifest" <<TOML

# The reader's own sqlx, pinned exactly at the newest 0.9.x.
sqlx = { version = "=$newest", default-features = false, features = ["postgres", "runtime-tokio"] }
TOML
      cargo generate-lockfile --quiet --manifest-path "$manifest"
      ;;
    *)
      log "unknown mode '$mode' (newest, sqlx-0.9.0, own-sqlx)"
      return 2
      ;;
  esac
  log "$mode: sqlx $(locked_version "$manifest" sqlx), sqlx-macros-core" \
    "$(locked_version "$manifest" sqlx-macros-core); building $crate"
  cargo test --quiet --no-run --manifest-path "$manifest"
  log "$mode: every snippet of the README and docs/ compiles with only the README's" \
    "dependencies"
}

modes=("$@")
((${#modes[@]})) || modes=(newest sqlx-0.9.0 own-sqlx)
for mode in "${modes[@]}"; do build "$mode"; done
