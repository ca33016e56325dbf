#!/bin/sh
# SPDX-License-Identifier: MIT
# The names each man page documents, from the NAME section of its scdoc
# source ("a, b, c - what they do"): prints "NAME PAGE SECTION" per line, the
# page's own name included. The one list the install rules (a .so link page
# per other name) and tests/man-coverage.sh read.
#
#   man/names.sh man/*.scd
for src in "$@"; do
    base=${src##*/}
    base=${base%.scd}
    page=${base%.*}
    section=${base##*.}
    awk -v page="$page" -v section="$section" -v src="$src" '
        /^# / { in_name = ($0 == "# NAME"); next }
        in_name && NF { text = text " " $0 }
        END {
            sub(/ - .*/, "", text)
            n = split(text, names, ",")
            if (n == 0) { print src ": no NAME section" > "/dev/stderr"; exit 1 }
            for (i = 1; i <= n; i++) {
                gsub(/[ \t]/, "", names[i])
                if (names[i] != "") print names[i], page, section
            }
        }' "$src" || exit 1
done
