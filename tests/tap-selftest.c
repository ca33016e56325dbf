/* SPDX-License-Identifier: MIT */
/* The TAP runner's own test: passing and failing assertions, skips, a
 * timeout, a crash, a failure on another thread, .init and .fini.
 * tests/tap-selftest.sh runs it and checks its output line by line, so the
 * failures here are on purpose. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"

#ifdef _WIN32
#include <windows.h>
#else
#include <pthread.h>
#include <unistd.h>
#endif

Test(selftest, passes)
{
    int four = 4;
    size_t one = 1;
    cr_assert(eq(int, 2 + 2, four));
    cr_assert(ne(int, four, 5), "four is %d", four);
    cr_assert(lt(i64, -1, 0));
    cr_assert(le(sz, one, 1));
    cr_assert(gt(u64, 2, 1));
    cr_assert(ge(long, 3L, 3L));
    cr_assert(eq(iptr, (intptr_t)-7, -7));
    cr_assert(eq(u32, 0xffffffffu, UINT32_MAX));
    cr_assert(eq(u8, (uint8_t)256, 0));
    cr_assert(eq(chr, 'a', "abc"[0]));
    cr_assert(eq(ptr, NULL, NULL));
    cr_assert(eq(str, "abc", "abc"));
    cr_assert(ne(str, "abc", NULL));
    cr_assert(lt(str, "abc", "abd"));
    cr_expect(four == 4);
}

/* The report names both operands with their values and the message; the rest
 * of the body does not run. */
Test(selftest, assert_fails)
{
    int four = 4;
    cr_assert(eq(int, four, 5), "four is %d", four);
    cr_log_info("after a failed assert");
}

Test(selftest, expect_fails_and_goes_on)
{
    cr_expect(eq(str, "left", "right"));
    cr_log_info("after a failed expect");
}

Test(selftest, a_false_expression_fails)
{
    cr_assert(1 + 1 == 3);
}

Test(selftest, fatal)
{
    cr_fatal("fatal %d", 42);
}

/* A message of several lines stays diagnostics: no line of it is a result. */
Test(selftest, message_of_two_lines)
{
    cr_assert(0, "first line\nok - not a result");
}

Test(selftest, skips)
{
    cr_skip_test("not here: %d", 7);
}

Test(selftest, times_out, .timeout = 0.5)
{
    for (;;) {
#ifdef _WIN32
        Sleep(100);
#else
        usleep(100000);
#endif
    }
}

Test(selftest, crashes)
{
    volatile int *volatile nowhere = NULL; /* volatile: no compile-time warning */
    *nowhere = 1;
}

Test(selftest, exits)
{
    exit(0);
}

#ifdef _WIN32
static DWORD WINAPI failing_thread(void *arg)
{
    cr_assert(eq(int, 1, 2), "on another thread");
    return 0;
}
#else
static void *failing_thread(void *arg)
{
    cr_assert(eq(int, 1, 2), "on another thread");
    return NULL;
}
#endif

Test(selftest, fails_on_another_thread)
{
#ifdef _WIN32
    HANDLE thread = CreateThread(NULL, 0, failing_thread, NULL, 0, NULL);
    WaitForSingleObject(thread, INFINITE);
#else
    pthread_t thread;
    pthread_create(&thread, NULL, failing_thread, NULL);
    pthread_join(thread, NULL);
#endif
    cr_log_info("the main thread went on");
}

static int state;

static void setup(void)
{
    state = 1;
}

static void teardown(void)
{
    cr_log_info("fini ran after state %d", state);
}

Test(selftest, init_and_fini, .init = setup, .fini = teardown)
{
    cr_assert(eq(int, state, 1));
    state = 2;
}

Test(selftest, fini_after_a_failure, .init = setup, .fini = teardown)
{
    state = 3;
    cr_assert(0, "failing with state %d", state);
}
