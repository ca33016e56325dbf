#!/bin/sh
# SPDX-License-Identifier: MIT
# EDDY_NODISCARD and EDDY_MUST_USE (include/eddy.h), compiled with -Wall
# -Wextra -pedantic -Werror by the compiler that built eddy (CC), so that no
# C23 attribute syntax leaks into older modes: a (void) cast silences every
# EDDY_NODISCARD result, in the compiler's default C and in C23 (C2x) where
# it has it, and every EDDY_MUST_USE one in C23; a new handle or the error of
# the call that makes one, left unused, still warns, where the compiler can
# say so. Each function the header marks must be in the programs below.
# Prints TAP for make check; runs from the build directory, srcdir points at
# the sources.
srcdir=${srcdir:-.}
header=$srcdir/include/eddy.h
cc=${CC:-cc}

tmp=$(mktemp -d) || exit 99
trap 'rm -rf "$tmp"' EXIT

# The functions the header marks with $1 (declarations may span lines: the
# name is the last word before the first parenthesis).
marked() {
    grep "^$1 EDDY_API" "$header" | sed 's/(.*//; s/.*[ *]//' | sort
}

cat >"$tmp/nodiscard.c" <<'EOF'
#include "eddy.h"
void drop(eddy_loop *loop, eddy_sock *s, eddy_file *f, eddy_future *fut, char *buf);
void drop(eddy_loop *loop, eddy_sock *s, eddy_file *f, eddy_future *fut, char *buf)
{
    (void)eddy_call_soon(loop, 0, 0);
    (void)eddy_call_soon_threadsafe(loop, 0, 0);
    (void)eddy_loop_run_once(loop, 0);
    (void)eddy_loop_fd(loop);
    (void)eddy_channel_send(0, 0);
    (void)eddy_channel_recv(0, 0);
    (void)eddy_channel_try_send(0, 0);
    (void)eddy_channel_try_recv(0, 0);
    (void)eddy_call_later(loop, 0, 0, 0, 0);
    (void)eddy_future_on_done(fut, 0, 0);
    (void)eddy_recv(s, buf, 1);
    (void)eddy_send(s, buf, 1);
    (void)eddy_addr_parse(0, "::1", 0);
    (void)eddy_sendto(s, buf, 1, 0);
    (void)eddy_recvfrom(s, buf, 1, 0);
    (void)eddy_file_read(f, buf, 1, 0);
    (void)eddy_file_write(f, buf, 1, 0);
    (void)eddy_file_sync(f);
    (void)eddy_file_stat(f, 0);
    (void)eddy_fs_stat(buf, 0);
    (void)eddy_fs_rename(buf, buf);
    (void)eddy_fs_mkdir(buf, 0);
    (void)eddy_buffer_register(loop, buf, 1);
    (void)eddy_buffer_unregister(loop, buf);
    (void)eddy_timeout_begin(0, 0);
    (void)eddy_timeout_reschedule(0, 0);
    (void)eddy_lock_acquire(0);
    (void)eddy_lock_try_acquire(0);
    (void)eddy_cond_wait(0);
    (void)eddy_sem_acquire(0);
    (void)eddy_sem_try_acquire(0);
    (void)eddy_queue_put(0, 0);
    (void)eddy_queue_get(0, 0);
    (void)eddy_queue_try_put(0, 0);
    (void)eddy_queue_try_get(0, 0);
    (void)eddy_stream_read(0, buf, 1);
    (void)eddy_stream_readexactly(0, buf, 1);
    (void)eddy_stream_readuntil(0, buf, 1, buf, 1);
    (void)eddy_stream_readline(0, buf, 1);
    (void)eddy_stream_peek(0, 0, 0);
    (void)eddy_stream_write(0, buf, 1);
    (void)eddy_stream_writev(0, 0, 0);
    (void)eddy_stream_drain(0);
    (void)eddy_process_wait(0, 0);
    (void)eddy_process_kill(0, 0);
    (void)eddy_stream_sendfile(0, f, 0, 1);
    (void)eddy_loop_metrics(loop, 0);
}
EOF

# The EDDY_MUST_USE calls, once with (void) and once bare.
must_use_calls='
    eddy_loop_new(&loop, 0);
    eddy_future_new(loop);
    eddy_spawn(loop, 0, 0);
    eddy_group_new(loop);
    eddy_tcp_listen(&s, 0, 0, 0);
    eddy_tcp_connect(&s, "::1", 1);
    eddy_accept(s, &s);
    eddy_udp_bind(&s, 0, 0);
    eddy_unix_listen(&s, "x", 0);
    eddy_unix_connect(&s, "x");
    eddy_file_open(&f, "x", 0, 0);
    eddy_backend_available("epoll");
    eddy_watch_start(&w, loop, 0, 0, 0, 0);
    eddy_signal_start(&sig, loop, 0, 0, 0);
    eddy_lock_new(0);
    eddy_event_new(0);
    eddy_cond_new(0, 0);
    eddy_sem_new(0, 0, 0);
    eddy_barrier_new(0, 1);
    eddy_queue_new(0, 0);
    eddy_channel_new(0, 1);
    eddy_spawn_threadsafe(loop, 0, 0);
    eddy_tcp_listen_opts(&s, 0, 0, 0);
    eddy_stream_open(0, 0, 0);
    eddy_open_connection(0, "::1", 1, 0);
    eddy_serve(0, 0, 0, 0);
    eddy_sock_open(&s, 0);
    eddy_pipe(0);
    eddy_pipe_open(&s, 0);
    eddy_process_spawn(0, 0);

    eddy_stream_start_tls(0, 0);'
must_use_count=$(printf '%s\n' "$must_use_calls" | grep -c 'eddy_')
for kind in void bare; do
    {
        echo '#include "eddy.h"'
        echo 'void use(eddy_loop *loop, eddy_sock *s, eddy_file *f);'
        echo 'void use(eddy_loop *loop, eddy_sock *s, eddy_file *f)'
        echo '{'
        echo '    eddy_watch *w;'
        echo '    eddy_signal *sig;'
        if [ $kind = void ]; then
            printf '%s\n' "$must_use_calls" | sed 's/^    eddy_/    (void)eddy_/'
        else
            printf '%s\n' "$must_use_calls"
        fi
        echo '}'
    } >"$tmp/must_use_$kind.c"
done

# Each marked function is called in the programs, and each called one is marked.
calls() {
    grep -o 'eddy_[a-z_]*(' "$@" | sed 's/.*://; s/($//' | sort -u
}
marked EDDY_NODISCARD >"$tmp/nodiscard.want"
calls "$tmp/nodiscard.c" >"$tmp/nodiscard.have"
marked EDDY_MUST_USE >"$tmp/must_use.want"
calls "$tmp/must_use_bare.c" >"$tmp/must_use.have"

compile() { # file, extra flags...
    file=$1
    shift
    $cc -I"$srcdir/include" -Wall -Wextra -pedantic -Werror "$@" -c "$file" -o "$tmp/out.o" >"$tmp/log" 2>&1
}

# C23 as the compiler spells it, if it has it.
c23=
for std in -std=c23 -std=c2x; do
    if echo 'int x;' >"$tmp/empty.c" && compile "$tmp/empty.c" "$std"; then
        c23=$std
        break
    fi
done
# GCC and Clang warn about an unused result in their default C too.
$cc -dM -E "$tmp/empty.c" 2>/dev/null | grep -q '__GNUC__' && gnuc=yes || gnuc=no

echo 1..8
n=0
result() { # ok?, description, [skip reason]
    n=$((n + 1))
    if [ -n "$3" ]; then
        echo "ok $n - $2 # SKIP $3"
    elif [ "$1" = 0 ]; then
        echo "ok $n - $2"
    else
        echo "not ok $n - $2"
        head -n 30 "$tmp/log" | sed 's/^/# /'
    fi
}

# [[nodiscard]] may not follow EDDY_API's GNU attribute or __declspec.
grep -n 'EDDY_API[[:space:]]*EDDY_\(NODISCARD\|MUST_USE\)' "$header" >"$tmp/log"
[ ! -s "$tmp/log" ]
result $? "EDDY_NODISCARD and EDDY_MUST_USE come before EDDY_API"
diff "$tmp/nodiscard.want" "$tmp/nodiscard.have" >"$tmp/log"
result $? "every EDDY_NODISCARD function is dropped with (void) below"
diff "$tmp/must_use.want" "$tmp/must_use.have" >"$tmp/log"
result $? "every EDDY_MUST_USE function is called below"

compile "$tmp/nodiscard.c"
result $? "(void) silences EDDY_NODISCARD in $cc's default C"
if [ -n "$c23" ]; then
    compile "$tmp/nodiscard.c" "$c23"
    result $? "(void) silences EDDY_NODISCARD in $c23"
    compile "$tmp/must_use_void.c" "$c23"
    result $? "(void) silences EDDY_MUST_USE in $c23"
else
    result 0 "(void) silences EDDY_NODISCARD in C23" "$cc has no C23"
    result 0 "(void) silences EDDY_MUST_USE in C23" "$cc has no C23"
fi

# A bare call of each EDDY_MUST_USE function: one warning each.
must_warn() { # flags...
    compile "$tmp/must_use_bare.c" -Wno-error "$@" || return 1
    warned=$(grep -c 'Wunused-result' "$tmp/log")
    [ "$warned" = "$must_use_count" ] && return 0
    echo "$warned warnings for $must_use_count unused results" >>"$tmp/log"
    return 1
}
if [ $gnuc = yes ]; then
    must_warn
    result $? "an unused EDDY_MUST_USE result warns in $cc's default C"
else
    result 0 "an unused EDDY_MUST_USE result warns" "$cc is neither GCC nor Clang"
fi
if [ -n "$c23" ]; then
    must_warn "$c23"
    result $? "an unused EDDY_MUST_USE result warns in $c23"
else
    result 0 "an unused EDDY_MUST_USE result warns in C23" "$cc has no C23"
fi
