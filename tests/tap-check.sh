# SPDX-License-Identifier: MIT
# Sourced by the shell tests that print TAP: check STATUS DESCRIPTION prints
# "ok N - DESCRIPTION" for status 0, else "not ok N - ..." followed by
# $tmp/log as TAP comments (the failure's details).
n=0
check() {
    n=$((n + 1))
    if [ "$1" = 0 ]; then
        echo "ok $n - $2"
    else
        echo "not ok $n - $2"
        sed 's/^/# /' "$tmp/log"
    fi
}
