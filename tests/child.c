/* SPDX-License-Identifier: MIT */
/* The children of the Windows process tests: a test binary linked with this
 * file, started as `BINARY --eddy-test-child MODE ARG...`, does MODE and
 * exits before its tests' main runs, so the tests need no program of
 * Wine's or Windows' own (no cmd.exe). Modes:
 *   cat          copies stdin to stdout until end of file
 *   echo A B ..  writes each argument and a newline
 *   exit N       exits with status N
 *   sleep MS [N] sleeps MS milliseconds, then exits N (0)
 *   pwd          writes the working directory and a newline
 *   env NAME     writes NAME's value (or "unset") and a newline
 * Output goes through WriteFile on the standard handle: no C runtime text
 * mode turns "\n" into "\r\n". */
#ifdef _WIN32
#include <windows.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "child.h"

static void put(const char *s, size_t len)
{
    HANDLE out = GetStdHandle(STD_OUTPUT_HANDLE);
    DWORD n;
    while (len > 0 && WriteFile(out, s, (DWORD)len, &n, NULL) && n > 0) {
        s += n;
        len -= n;
    }
}

static void put_line(const char *s)
{
    put(s, strlen(s));
    put("\n", 1);
}

static int cat(void)
{
    static char buf[65536];
    HANDLE in = GetStdHandle(STD_INPUT_HANDLE), out = GetStdHandle(STD_OUTPUT_HANDLE);
    DWORD n, w;
    while (ReadFile(in, buf, sizeof buf, &n, NULL) && n > 0)
        for (DWORD done = 0; done < n; done += w)
            if (!WriteFile(out, buf + done, n - done, &w, NULL)) return 1;
    return 0;
}

static int child_main(int argc, char **argv)
{
    const char *mode = argc > 0 ? argv[0] : "";
    if (strcmp(mode, "cat") == 0) return cat();
    if (strcmp(mode, "echo") == 0) {
        for (int i = 1; i < argc; i++)
            put_line(argv[i]);
        return 0;
    }
    if (strcmp(mode, "exit") == 0 && argc > 1) return atoi(argv[1]);
    if (strcmp(mode, "sleep") == 0 && argc > 1) {
        Sleep((DWORD)atoi(argv[1]));
        return argc > 2 ? atoi(argv[2]) : 0;
    }
    if (strcmp(mode, "pwd") == 0) {
        char dir[MAX_PATH];
        DWORD n = GetCurrentDirectoryA(sizeof dir, dir);
        put_line(n > 0 && n < sizeof dir ? dir : "?");
        return 0;
    }
    if (strcmp(mode, "env") == 0 && argc > 1) {
        const char *v = getenv(argv[1]);
        put_line(v ? v : "unset");
        return 0;
    }
    return 99;
}

__attribute__((constructor)) static void maybe_child(void)
{
    if (__argc > 1 && strcmp(__argv[1], CHILD_FLAG) == 0) exit(child_main(__argc - 2, __argv + 2));
}

const char *child_program(void)
{
    static char path[MAX_PATH];
    if (!path[0]) GetModuleFileNameA(NULL, path, sizeof path);
    return path;
}
#endif
