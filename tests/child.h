/* SPDX-License-Identifier: MIT */
/* The test binary as a child process on Windows (tests/child.c): started
 * with CHILD_FLAG and a mode, it acts as cat, echo, exit, sleep, pwd or
 * env, with no program of Wine's own. */
#ifndef EDDY_TEST_CHILD_H
#define EDDY_TEST_CHILD_H

#define CHILD_FLAG "--eddy-test-child"

/* The running test binary's full path (the program to spawn). */
const char *child_program(void);

#endif /* EDDY_TEST_CHILD_H */
