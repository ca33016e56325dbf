#!/bin/sh
# SPDX-License-Identifier: MIT
# README.md's capability table and docs/platforms.md are tools/eddy-caps output:
# the table between the two markers in README.md must be `eddy-caps --static`;
# docs/platforms.md must begin with `eddy-caps --platforms` and its end marker
# (what follows the marker is written by hand). Both are the static table,
# the same on every machine (the probed view, `eddy-caps` with no option, is
# machine-specific and in neither). Prints TAP for make check.
#
# With --update, rewrites both from the tool instead (make update-caps-docs).
# Runs from the build directory; srcdir points at the sources.
srcdir=${srcdir:-.}
tool=${EDDY_CAPS:-./tools/eddy-caps}
readme=$srcdir/README.md
platforms=$srcdir/docs/platforms.md
begin='<!-- eddy-caps static table: begin -->'
end='<!-- eddy-caps static table: end -->'
platforms_end='<!-- eddy-caps --platforms: end; hand-written below -->'

tmp=$(mktemp -d) || exit 99
trap 'rm -rf "$tmp"' EXIT
"$tool" --static >"$tmp/static.md" || { echo "Bail out! $tool --static failed"; exit 99; }
"$tool" --platforms >"$tmp/platforms.md" || { echo "Bail out! $tool --platforms failed"; exit 99; }
echo "$platforms_end" >>"$tmp/platforms.md"

if [ "$1" = --update ]; then
    grep -qxF "$begin" "$readme" && grep -qxF "$end" "$readme" ||
        { echo "$readme: the markers are missing: $begin / $end" >&2; exit 1; }
    awk -v b="$begin" -v e="$end" -v table="$tmp/static.md" '
        $0 == e { skip = 0 }
        !skip { print }
        $0 == b { while ((getline line < table) > 0) print line; skip = 1 }
    ' "$readme" >"$tmp/README.md" && cat "$tmp/README.md" >"$readme"
    grep -qxF "$platforms_end" "$platforms" ||
        { echo "$platforms: the marker is missing: $platforms_end" >&2; exit 1; }
    { cat "$tmp/platforms.md"; awk -v e="$platforms_end" 'p { print } $0 == e { p = 1 }' "$platforms"; } \
        >"$tmp/platforms-new.md" && cat "$tmp/platforms-new.md" >"$platforms"
    echo "updated $readme and $platforms"
    exit 0
fi

echo "1..2"
awk -v b="$begin" -v e="$end" '$0 == e { p = 0 } p { print } $0 == b { p = 1 }' \
    "$readme" >"$tmp/readme-table.md"
status=0
check() { # name expected actual
    if diff -u "$2" "$3" >"$tmp/diff"; then
        echo "ok $n - $1"
    else
        echo "not ok $n - $1 (run make update-caps-docs)"
        sed 's/^/# /' "$tmp/diff"
        status=1
    fi
}
n=1
check "README.md's capability table is eddy-caps --static" "$tmp/static.md" "$tmp/readme-table.md"
n=2
awk -v e="$platforms_end" '{ print } $0 == e { exit }' "$platforms" >"$tmp/platforms-head.md"
check "docs/platforms.md begins with eddy-caps --platforms" "$tmp/platforms.md" "$tmp/platforms-head.md"
exit $status
