/* SPDX-License-Identifier: MIT */
/* The test framework: Criterion where it is packaged, else (Windows, or
 * -DEDDY_TEST_TAP to prove it on POSIX) the TAP runner of tap.h, which
 * provides the same names: Test(), cr_assert(), cr_expect(), the matchers
 * eq/ne/lt/le/gt/ge, cr_skip_test(), cr_fatal(), cr_log_info(). */
#ifndef EDDY_TEST_CHECK_H
#define EDDY_TEST_CHECK_H

#if defined(_WIN32) || defined(EDDY_TEST_TAP)
#include "tap.h"
#else
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#endif

#endif /* EDDY_TEST_CHECK_H */
