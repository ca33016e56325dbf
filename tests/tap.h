/* SPDX-License-Identifier: MIT */
/* A small TAP runner behind Criterion's names, for hosts without Criterion
 * (mingw-w64 under Wine). Test files include check.h, which picks Criterion or
 * this header; defining EDDY_TEST_TAP selects it on POSIX too, so `make check`
 * proves the runner on Linux.
 *
 * Each test runs in its own process, as under Criterion: a failed assertion
 * (in a task, a callback or a worker thread) prints `not ok` and ends that
 * process, and a crash or a timeout ends only that test. tests/tap.c holds the
 * runner and main(). */
#ifndef EDDY_TEST_TAP_H
#define EDDY_TEST_TAP_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct tap_test {
    const char *suite;
    const char *name;
    void (*fn)(void);
    int line; /* tests run in source order */
    void (*init)(void);
    void (*fini)(void);
    double timeout; /* seconds; 0 = none */
    struct tap_test *next;
};

void tap_register(struct tap_test *t);

/* Test(suite, name, .init = f, .fini = g, .timeout = seconds) { body } */
#define Test(Suite, Name, ...)                                                                     \
    static void tap_fn_##Suite##_##Name(void);                                                     \
    static struct tap_test tap_test_##Suite##_##Name = {.suite = #Suite,                           \
                                                        .name = #Name,                             \
                                                        .fn = tap_fn_##Suite##_##Name,             \
                                                        .line = __LINE__,                          \
                                                        __VA_ARGS__};                              \
    __attribute__((constructor)) static void tap_register_##Suite##_##Name(void)                   \
    {                                                                                              \
        tap_register(&tap_test_##Suite##_##Name);                                                  \
    }                                                                                              \
    static void tap_fn_##Suite##_##Name(void)

/* mingw-w64: the C99 printf of __USE_MINGW_ANSI_STDIO (the build defines it). */
#ifdef _WIN32
#define TAP_PRINTF(f, a) __attribute__((format(gnu_printf, f, a)))
#else
#define TAP_PRINTF(f, a) __attribute__((format(printf, f, a)))
#endif

/* The message is the caller's format after one space, so that an assertion
 * without a message passes " " rather than an empty format. */
void tap_fail(int fatal, const char *file, int line, const char *expr, const char *fmt, ...)
    TAP_PRINTF(5, 6);
void tap_skip(const char *fmt, ...) TAP_PRINTF(1, 2) __attribute__((noreturn));
void tap_log(const char *fmt, ...) TAP_PRINTF(1, 2);
void tap_clear_note(void);

#define TAP_CHECK(fatal, expr, text, ...)                                                          \
    do {                                                                                           \
        tap_clear_note();                                                                          \
        if (!(expr)) tap_fail(fatal, __FILE__, __LINE__, text, " " __VA_ARGS__);                   \
    } while (0)

/* The expression is stringified here, before its matchers expand. */
#define cr_assert(expr, ...) TAP_CHECK(1, expr, #expr, __VA_ARGS__)
#define cr_expect(expr, ...) TAP_CHECK(0, expr, #expr, __VA_ARGS__)
#define cr_fatal(...)        tap_fail(1, __FILE__, __LINE__, NULL, " " __VA_ARGS__)
#define cr_skip_test(...)    tap_skip(" " __VA_ARGS__)
#define cr_log_info(...)     tap_log(" " __VA_ARGS__)

/* ---- the matchers of criterion/new/assert.h ------------------------------
 * eq(type, a, b) and friends are expressions; when one is false it notes both
 * operands and their values, which the failing assertion prints. */
enum tap_op { TAP_EQ, TAP_NE, TAP_LT, TAP_LE, TAP_GT, TAP_GE };

int tap_holds(enum tap_op op, int order);
void tap_note(enum tap_op op, const char *type, const char *expr_a, const char *expr_b,
              const char *value_a, const char *value_b);

#define TAP_COMPARE(tag, T, fmt, wide)                                                             \
    static inline int tap_cmp_##tag(T a, T b, enum tap_op op, const char *ea, const char *eb)      \
    {                                                                                              \
        if (tap_holds(op, (a > b) - (a < b))) return 1;                                            \
        char va[40], vb[40];                                                                       \
        snprintf(va, sizeof(va), fmt, (wide)a);                                                    \
        snprintf(vb, sizeof(vb), fmt, (wide)b);                                                    \
        tap_note(op, #tag, ea, eb, va, vb);                                                        \
        return 0;                                                                                  \
    }
TAP_COMPARE(int, int, "%lld", long long)
TAP_COMPARE(long, long, "%lld", long long)
TAP_COMPARE(i64, int64_t, "%lld", long long)
TAP_COMPARE(iptr, intptr_t, "%lld", long long)
TAP_COMPARE(sz, size_t, "%llu", unsigned long long)
TAP_COMPARE(u64, uint64_t, "%llu", unsigned long long)
TAP_COMPARE(u32, uint32_t, "%llu", unsigned long long)
TAP_COMPARE(u8, uint8_t, "%llu", unsigned long long)
TAP_COMPARE(chr, char, "%d", int)
TAP_COMPARE(ptr, const void *, "%p", const void *)

static inline int tap_cmp_str(const char *a, const char *b, enum tap_op op, const char *ea,
                              const char *eb)
{
    int order = a && b ? strcmp(a, b) : (a != NULL) - (b != NULL);
    if (tap_holds(op, (order > 0) - (order < 0))) return 1;
    char va[200], vb[200];
    snprintf(va, sizeof(va), a ? "\"%s\"" : "%s", a ? a : "NULL");
    snprintf(vb, sizeof(vb), b ? "\"%s\"" : "%s", b ? b : "NULL");
    tap_note(op, "str", ea, eb, va, vb);
    return 0;
}

#define eq(type, a, b) tap_cmp_##type((a), (b), TAP_EQ, #a, #b)
#define ne(type, a, b) tap_cmp_##type((a), (b), TAP_NE, #a, #b)
#define lt(type, a, b) tap_cmp_##type((a), (b), TAP_LT, #a, #b)
#define le(type, a, b) tap_cmp_##type((a), (b), TAP_LE, #a, #b)
#define gt(type, a, b) tap_cmp_##type((a), (b), TAP_GT, #a, #b)
#define ge(type, a, b) tap_cmp_##type((a), (b), TAP_GE, #a, #b)
#define not(expr) (!(expr))

#endif /* EDDY_TEST_TAP_H */
