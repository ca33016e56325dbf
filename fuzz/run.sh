#!/bin/sh
# SPDX-License-Identifier: MIT
# make fuzz: runs each libFuzzer target (fuzz/NAME, built by make) for
# FUZZ_SECONDS (default 60) from its seed corpus (fuzz/corpus/NAME in the
# source tree, read-only) plus what earlier runs found (fuzz/work/NAME in the
# build tree). Prints TAP, one test per target; a crash, a leak or a
# timeout fails it, and its input is kept as fuzz/crash-NAME-*.
seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-addr_parse http_parser stream_readers}
src=${srcdir:-.}
echo "TAP version 13"
i=0
failed=0
for t in $targets; do
    i=$((i + 1))
    log=fuzz/$t.fuzz.log
    mkdir -p "fuzz/work/$t"
    fuzz/$t -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
        -print_final_stats=1 -artifact_prefix="fuzz/crash-$t-" \
        "fuzz/work/$t" "$src/fuzz/corpus/$t" >"$log" 2>&1
    status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    corpus=$(ls "fuzz/work/$t" | wc -l)
    if [ $status -eq 0 ]; then
        echo "ok $i - $t: ${runs:-?} inputs in ${seconds}s, no failure ($corpus inputs found beyond the seeds)"
    else
        echo "not ok $i - $t: exit $status after ${runs:-?} inputs (log $log)"
        grep -E 'ERROR|SUMMARY|Test unit written|==[0-9]+==' "$log" | head -n 20 | sed 's/^/# /'
        failed=$((failed + 1))
    fi
done
echo "1..$i"
[ "$failed" -eq 0 ]
