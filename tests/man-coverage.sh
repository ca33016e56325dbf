#!/bin/sh
# SPDX-License-Identifier: MIT
# Every function the built library exports has a man page name, and every
# name a man3 page lists (its NAME section, man/names.sh) is an exported
# function whose prototype, as include/eddy.h declares it, is in that page's
# SYNOPSIS; every page is built from a source the build knows, and renders
# without a warning. Prints TAP for make check; runs from the build
# directory, with srcdir pointing at the sources and EDDY_MAN_SCD listing the
# page sources the build installs (Makefile.am's MAN_SCD).
srcdir=${srcdir:-.}
lib=.libs/libeddy.so
skip() { echo "1..0 # SKIP $*"; exit 0; }
case ${EXEEXT-} in .exe) skip "a Windows build (no ELF dynamic symbols to read)" ;; esac
command -v nm >/dev/null 2>&1 || skip "nm is not installed"
[ -f "$lib" ] || skip "no $lib (a static-only or non-ELF build)"
[ -n "${EDDY_MAN_SCD-}" ] || { echo "Bail out! EDDY_MAN_SCD is not set (run through make check)"; exit 99; }
# shellcheck disable=SC2086,SC2116 # one space between the names
listed=$(echo $EDDY_MAN_SCD)

tmp=$(mktemp -d) || exit 99
trap 'rm -rf "$tmp"' EXIT

# T symbols starting with eddy_ (a symbol version, "@@EDDY_0", is dropped).
nm -D --defined-only "$lib" >"$tmp/nm" || { echo "Bail out! nm -D failed on $lib"; exit 99; }
awk '$2 == "T" && $3 ~ /^eddy_/ { sub(/@.*/, "", $3); print $3 }' "$tmp/nm" | sort -u >"$tmp/exported"
[ -s "$tmp/exported" ] || { echo "Bail out! $lib exports no eddy_ function"; exit 99; }

pages=
for f in $listed; do
    case $f in *.3.scd) pages="$pages $srcdir/$f" ;; esac
done
# shellcheck disable=SC2086
$SHELL "$srcdir/man/names.sh" $pages >"$tmp/names" || { echo "Bail out! man/names.sh failed"; exit 99; }
awk '{ print $1 }' "$tmp/names" | sort -u >"$tmp/named"

# One prototype per line, as "name<TAB>normalised text": whitespace runs made
# one space, none inside parentheses' edges, the export macros dropped.
normalise='{ gsub(/[ \t]+/, " "); gsub(/\( /, "("); gsub(/ \)/, ")"); sub(/^ /, ""); sub(/ $/, "") }'
awk '
    /^EDDY_API / { proto = ""; collecting = 1 }
    collecting { proto = proto " " $0 }
    collecting && /;/ {
        collecting = 0
        sub(/;.*/, "", proto)
        gsub(/EDDY_[A-Z_]+ /, "", proto) # EDDY_API, EDDY_NODISCARD
        $0 = proto
        '"$normalise"'
        name = $0
        sub(/\(.*/, "", name)
        sub(/.*[ *]/, "", name)
        print name "\t" $0
    }' "$srcdir/include/eddy.h" | sort >"$tmp/header"

# The statements of a page's SYNOPSIS literal block, one per line, normalised.
synopsis() {
    awk '
        /^# / { in_synopsis = ($0 == "# SYNOPSIS"); next }
        in_synopsis && /^```/ { literal = !literal; next }
        !(in_synopsis && literal) { next }
        continued { continued = /\\$/; next }
        /^#/ { continued = /\\$/; next }
        { text = text " " $0 }
        END {
            n = split(text, statements, ";")
            for (i = 1; i <= n; i++) { $0 = statements[i]; '"$normalise"'; if ($0 != "") print }
        }' "$1"
}

echo "1..5"
status=0
report() { # number, description, file of offenders (empty: ok)
    if [ -s "$3" ]; then
        echo "not ok $1 - $2"
        sed 's/^/# /' "$3"
        status=1
    else
        echo "ok $1 - $2"
    fi
}

comm -23 "$tmp/exported" "$tmp/named" >"$tmp/undocumented"
report 1 "every function $lib exports has a man page name (a NAME section in man/*.3.scd)" \
    "$tmp/undocumented"

comm -13 "$tmp/exported" "$tmp/named" >"$tmp/unknown"
report 2 "every name in a man3 page's NAME section is a function $lib exports" "$tmp/unknown"

: >"$tmp/missing"
while read -r name page section; do
    proto=$(awk -F '\t' -v n="$name" '$1 == n { print $2 }' "$tmp/header")
    [ -n "$proto" ] || continue # not in eddy.h: check 2 or 1 says so
    synopsis "$srcdir/man/$page.$section.scd" >"$tmp/synopsis"
    grep -qxF "$proto" "$tmp/synopsis" ||
        echo "man/$page.$section.scd: no \"$proto;\" in its SYNOPSIS" >>"$tmp/missing"
done <"$tmp/names"
report 3 "each page's SYNOPSIS has the prototype include/eddy.h declares for every name it lists" \
    "$tmp/missing"

: >"$tmp/unlisted"
for f in "$srcdir"/man/*.scd; do
    case " $listed " in
    *" man/${f##*/} "*) ;;
    *) echo "${f#"$srcdir"/} is not in MAN_SCD (Makefile.am)" >>"$tmp/unlisted" ;;
    esac
done
report 4 "every man/*.scd is built and installed (Makefile.am's MAN_SCD)" "$tmp/unlisted"

# The generated pages, as man shows them: groff's warnings (a line it cannot
# break, an unknown macro) go to stderr.
if command -v man >/dev/null 2>&1; then
    : >"$tmp/warnings"
    for f in $listed; do
        page=${f%.scd}
        [ -f "$page" ] || page=$srcdir/$page
        MANWIDTH=80 man --warnings -l "$page" >/dev/null 2>"$tmp/stderr" ||
            echo "$page: man exited with $?" >>"$tmp/warnings"
        sed "s|^|$page: |" "$tmp/stderr" >>"$tmp/warnings"
    done
    report 5 "every page renders without a warning (MANWIDTH=80 man --warnings -l)" "$tmp/warnings"
else
    echo "ok 5 # SKIP man is not installed"
fi
exit $status
