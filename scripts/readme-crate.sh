#!/usr/bin/env bash
# Builds every Rust snippet of README.md in a new crate whose dependencies are exactly the
# [dev-dependencies] the README tells a reader to add (its first ```toml block), with pgfresh
# taken from this checkout instead of crates.io. A doctest inside pgfresh cannot show that: there,
# pgfresh's own dependencies (sqlx, tokio, …) are in scope too.
#
# Usage:  scripts/readme-crate.sh [CRATE_DIR]      (default: target/readme-crate)
#
# Each ```rust block becomes tests/readme_NN.rs (lines starting with `# ` are kept without the
# marker, as rustdoc does); a block whose first line is `// build.rs` becomes the crate's build.rs;
# ```rust,ignore blocks other than that are skipped. The crate gets this repository's migrations/
# (the reader's own, in the README) and tests/fixtures/. Then `cargo test --no-run` must succeed.
# The lock file starts from pgfresh's, so the versions (and the compiled dependencies in the shared
# target directory) are the ones CI tests pgfresh with.
set -euo pipefail

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
crate=${1:-$repo/target/readme-crate}
readme=$repo/README.md

rm -rf "$crate"
mkdir -p "$crate/tests" "$crate/src"

python3 - "$readme" "$crate" "$repo" <<'EOF'
import re, sys, textwrap
readme, crate, repo = sys.argv[1:4]
text = open(readme).read()
blocks = re.findall(r'^([ \t]*)```([^\n]*)\n(.*?)^\1```[ \t]*$', text, flags=re.S | re.M)
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
open(f'{crate}/src/lib.rs', 'w').write('//! Nothing: the README\'s snippets are in tests/.\n')
n = 0
for indent, lang, body in blocks:
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
        open(f'{crate}/build.rs', 'w').write(code)
        continue
    if 'ignore' in attrs:
        continue
    n += 1
    open(f'{crate}/tests/readme_{n:02}.rs', 'w').write(code)
print(f'readme-crate: {n} snippets', file=sys.stderr)
EOF

cp -r "$repo/migrations" "$crate/migrations"
mkdir -p "$crate/tests/fixtures"
cp -r "$repo/tests/fixtures/." "$crate/tests/fixtures/"
cp "$repo/Cargo.lock" "$crate/Cargo.lock"

echo "readme-crate: building $crate" >&2
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target} cargo test --quiet --no-run \
  --manifest-path "$crate/Cargo.toml"
echo "readme-crate: every snippet compiles with only the README's dependencies" >&2
