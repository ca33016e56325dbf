#!/bin/sh
# SPDX-License-Identifier: MIT
# Every C example in README.md and docs/*.md compiles: each ```c block is
# taken out and compiled against include/eddy.h, so no example rots when the
# API changes. Prints TAP for make check.
#
# The convention for a ```c block (tests/README.md says the same):
# - A block with an #include line is a whole translation unit, compiled as it
#   is: it includes everything it uses, eddy.h among the rest.
# - A block without one is a fragment that uses eddy.h alone (functions, a list
#   of declarations): `#include <eddy.h>` is put before it, nothing else. A
#   fragment that needs another header (O_RDONLY, printf, struct sockaddr_in)
#   must include it, and eddy.h with it.
# - A block that defines main() is a program: it is also linked with the
#   libeddy just built.
# Compiled with -Wall -Wextra -Werror, less unused functions and parameters
# (a fragment's static functions have no caller). Errors name the document's
# lines (#line).
#
# Runs from the build directory; srcdir points at the sources. DOC_CC,
# DOC_CFLAGS and DOC_LDFLAGS are the build's compiler and flags (Makefile.am).
# Skipped for Windows builds (the examples are compiled where they are built).
srcdir=${srcdir:-.}
cc=${DOC_CC:-cc}
cflags="${DOC_CFLAGS-} -I$srcdir/include -Wall -Wextra -Werror -Wno-unused-function -Wno-unused-parameter"
libtool=${LIBTOOL:-./libtool}

if [ "${EXEEXT-}" = .exe ]; then
    echo "1..0 # SKIP the examples are compiled by the native build, not a Windows one"
    exit 0
fi

tmp=$(mktemp -d) || exit 99
trap 'rm -rf "$tmp"' EXIT

# Each block as $tmp/ex<N>.c, and its origin (file:line) in $tmp/ex<N>.where.
count=0
for doc in "$srcdir/README.md" "$srcdir"/docs/*.md; do
    [ -f "$doc" ] || continue
    name=${doc#"$srcdir"/}
    count=$(awk -v dir="$tmp" -v name="$name" -v n="$count" '
        /^```c[ \t]*$/ && !in_block { in_block = 1; start = NR + 1; body = ""; next }
        /^```[ \t]*$/ && in_block {
            in_block = 0; n++
            file = dir "/ex" n ".c"
            if (body !~ /(^|\n)#[ \t]*include/) print "#include <eddy.h>" > file
            printf "#line %d \"%s\"\n%s", start, name, body > file
            close(file)
            print name ":" start > (dir "/ex" n ".where")
            close(dir "/ex" n ".where")
            next
        }
        in_block { body = body $0 "\n" }
        END { print n }
    ' "$doc") || { echo "Bail out! cannot read $doc"; exit 99; }
done

echo "1..$count"
status=0
i=1
while [ "$i" -le "$count" ]; do
    src=$tmp/ex$i.c
    where=$(cat "$tmp/ex$i.where")
    if grep -Eq '(^|[^A-Za-z0-9_])main[ \t]*\(' "$src"; then
        what="compiles and links"
        # shellcheck disable=SC2086 # the flags are words
        $libtool --mode=link --quiet $cc $cflags ${DOC_LDFLAGS-} -o "$tmp/ex$i" "$src" \
            libeddy.la >"$tmp/out" 2>&1
    else
        what="compiles"
        # shellcheck disable=SC2086
        $cc $cflags -c -o "$tmp/ex$i.o" "$src" >"$tmp/out" 2>&1
    fi
    if [ $? -eq 0 ]; then
        echo "ok $i - $where $what"
    else
        echo "not ok $i - $where $what"
        sed 's/^/# /' "$tmp/out"
        status=1
    fi
    i=$((i + 1))
done
exit $status
