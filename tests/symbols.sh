#!/bin/sh
# SPDX-License-Identifier: MIT
# libeddy.so exports exactly the functions include/eddy.h declares (EDDY_API),
# each with a version node of lib/eddy.map, and one data object, the debug
# registry eddy-ps reads (lib/registry.h; docs/decisions.md), and nothing
# else: no eddy__ internals, no symbol of a library linked in. Skipped where the library is
# not an ELF shared object built with the version script (Windows, macOS).
# Prints TAP for make check; runs from the build directory, srcdir points at
# the sources.
srcdir=${srcdir:-.}
lib=.libs/libeddy.so
map=$srcdir/lib/eddy.map
header=$srcdir/include/eddy.h
# The data objects the library exports (not in include/eddy.h: tools in
# other processes find them by name).
data_objects="eddy_debug_registry"

skip_all() {
    echo "1..0 # SKIP $1"
    exit 0
}
[ "${EDDY_VERSION_SCRIPT:-yes}" = yes ] || skip_all "the linker takes no version script here"
[ -f "$lib" ] || skip_all "no $lib (not an ELF shared library here)"
command -v readelf >/dev/null 2>&1 || skip_all "no readelf"

tmp=$(mktemp -d) || exit 99
trap 'rm -rf "$tmp"' EXIT

# The dynamic symbols the library defines, as "name version" ("-": none);
# readelf prints name@@VERSION for a default version, name@VERSION otherwise.
# The version nodes themselves (ABS symbols named after them, with or
# without @@ as readelf's version has it) are left out.
readelf --dyn-syms -W "$lib" >"$tmp/dynsyms" || { echo "Bail out! readelf $lib failed"; exit 99; }
awk '$1 ~ /^[0-9]+:$/ && $7 != "UND" && $8 != "" {
        name = $8; version = "-"
        i = index(name, "@")
        if (i) { version = substr(name, i); sub(/^@+/, "", version); name = substr(name, 1, i - 1) }
        if ($7 == "ABS" && (version == "-" || version == name) && name ~ /^EDDY_/) next
        print name, version
    }' "$tmp/dynsyms" | sort >"$tmp/exported"
# The nodes lib/eddy.map defines, and the names it lists under them.
tr '\n' ' ' <"$map" | awk '{ gsub(/\/\*([^*]|\*+[^*\/])*\*+\//, ""); print }' |
    tr '{};' '\n\n\n' >"$tmp/map.flat"
grep -o 'EDDY_[0-9][0-9.]*' "$tmp/map.flat" | sort -u >"$tmp/nodes"
sed 's/^[[:space:]]*//; s/^global:[[:space:]]*//; s/^local:[[:space:]]*//; s/[[:space:]]*$//' \
    "$tmp/map.flat" | grep '^eddy_' | sort >"$tmp/listed"
grep -o 'EDDY_API[^(]*(' "$header" | sed 's/($//; s/.*[ *]//' | grep '^eddy_' | sort -u \
    >"$tmp/declared"
printf '%s\n' $data_objects | sort >"$tmp/data"
# What readelf calls OBJECT, by name.
awk '$1 ~ /^[0-9]+:$/ && $7 != "UND" && $7 != "ABS" && $4 == "OBJECT" { sub(/@.*/, "", $8); print $8 }' \
    "$tmp/dynsyms" | sort >"$tmp/objects"

echo 1..7
. "$srcdir/tests/tap-check.sh"

awk '$1 !~ /^eddy_[a-z0-9]/' "$tmp/exported" >"$tmp/log"
[ ! -s "$tmp/log" ]
check $? "only public eddy_ names are exported (no eddy__ internals, no strays)"

awk 'NR == FNR { node[$1] = 1; next } !($2 in node)' "$tmp/nodes" "$tmp/exported" >"$tmp/log"
[ ! -s "$tmp/log" ] && [ -s "$tmp/exported" ]
check $? "every exported symbol carries a version node of lib/eddy.map ($(tr '\n' ' ' <"$tmp/nodes"))"

cut -d' ' -f1 "$tmp/exported" | grep -vxF -f "$tmp/data" | diff "$tmp/declared" - >"$tmp/log"
check $? "the exported functions are those include/eddy.h declares"

grep -vxF -f "$tmp/data" "$tmp/listed" | diff "$tmp/declared" - >"$tmp/log"
check $? "lib/eddy.map lists each function include/eddy.h declares, once"

diff "$tmp/data" "$tmp/objects" >"$tmp/log"
[ $? = 0 ] && grep -qxF -f "$tmp/data" "$tmp/listed" || echo "not in lib/eddy.map" >>"$tmp/log"
[ ! -s "$tmp/log" ]
check $? "the exported data objects are exactly: $data_objects"

uniq -d "$tmp/listed" >"$tmp/log"
[ ! -s "$tmp/log" ]
check $? "no function is in two nodes of lib/eddy.map"

# A program built against the library binds each eddy_ function it calls to
# its version (tools/eddy-caps, linked against the shared library).
prog=tools/.libs/eddy-caps
if [ -f "$prog" ]; then
    readelf --dyn-syms -W "$prog" >"$tmp/prog" || { echo "Bail out! readelf $prog failed"; exit 99; }
    awk '$7 == "UND" && $8 ~ /^eddy_/ && $8 !~ /@EDDY_[0-9]/' "$tmp/prog" >"$tmp/log"
    grep -q 'UND eddy_.*@EDDY_[0-9]' "$tmp/prog" || echo "no versioned eddy_ symbol" >>"$tmp/log"
    [ ! -s "$tmp/log" ]
    check $? "$prog calls versioned symbols (eddy_...@EDDY_x.y)"
else
    n=$((n + 1))
    echo "ok $n - a program calls versioned symbols # SKIP no $prog (a static build?)"
fi
