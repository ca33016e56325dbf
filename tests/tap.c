/* SPDX-License-Identifier: MIT */
/* The TAP runner of tap.h: registry, assertions and main().
 *
 * Usage: suite [--list] [--filter GLOB] [--tap[=FILE]]
 *   Runs every test (or those whose "suite/name" matches GLOB: * and ?) and
 *   prints TAP version 13 on stdout (or FILE). Each test runs in a child:
 *   fork() on POSIX, the same program with `--child suite/name` on Windows.
 *   Result lines are `ok - suite::name`, unnumbered as Criterion's, so that
 *   tests/run-tap.sh can merge runs. The child prints its own result line
 *   and exits with TAP_EXIT_PRINTED or TAP_EXIT_FAILED; any other end (a
 *   crash, exit(), a timeout) is reported by the parent as `not ok`. */
#include "tap.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>

#ifdef _WIN32
#include <fcntl.h>
#include <io.h>
#include <windows.h>
#else
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

enum { TAP_EXIT_PRINTED = 42, TAP_EXIT_FAILED = 43 };

static struct tap_test *tests;       /* sorted by line */
static struct tap_test *current;     /* the test this child runs */
static volatile int current_failed;  /* an assertion or expectation failed */
static volatile int result_printed;  /* the result line is out */
static _Thread_local char note[512]; /* the last false matcher's operands */
#ifdef _WIN32
static DWORD main_thread;
#else
static pthread_t main_thread;
#endif

void tap_register(struct tap_test *t)
{
    struct tap_test **at = &tests;
    while (*at && (*at)->line < t->line)
        at = &(*at)->next;
    t->next = *at;
    *at = t;
}

int tap_holds(enum tap_op op, int order)
{
    switch (op) {
    case TAP_EQ:
        return order == 0;
    case TAP_NE:
        return order != 0;
    case TAP_LT:
        return order < 0;
    case TAP_LE:
        return order <= 0;
    case TAP_GT:
        return order > 0;
    case TAP_GE:
        return order >= 0;
    }
    return 0;
}

void tap_note(enum tap_op op, const char *type, const char *expr_a, const char *expr_b,
              const char *value_a, const char *value_b)
{
    static const char *const names[] = {"eq", "ne", "lt", "le", "gt", "ge"};
    snprintf(note, sizeof(note), "#   %s(%s): %s = %s, %s = %s\n", names[op], type, expr_a, value_a,
             expr_b, value_b);
}

void tap_clear_note(void)
{
    note[0] = '\0';
}

static bool on_main_thread(void)
{
#ifdef _WIN32
    return GetCurrentThreadId() == main_thread;
#else
    return pthread_equal(pthread_self(), main_thread);
#endif
}

/* Prints the result line once (the first thread to get here wins) and ends
 * the child. fini runs unless the end comes from another thread. */
static void __attribute__((noreturn)) finish(const char *directive)
{
    if (current->fini && on_main_thread()) {
        void (*fini)(void) = current->fini;
        current->fini = NULL; /* a failure inside fini ends here too */
        fini();
    }
    while (__atomic_exchange_n(&result_printed, 1, __ATOMIC_SEQ_CST)) {
#ifdef _WIN32 /* another thread printed the result and is ending the process */
        Sleep(1000);
#else
        pause();
#endif
    }
    printf("%s - %s::%s%s\n", current_failed ? "not ok" : "ok", current->suite, current->name,
           directive ? directive : "");
    fflush(stdout);
    _exit(current_failed ? TAP_EXIT_FAILED : TAP_EXIT_PRINTED);
}

/* Formats a message as diagnostics: every line it has starts with "# ", so
 * that none is taken for a result. Drops the one leading space of the
 * caller's format (see tap.h). */
static void format_comment(char *out, size_t size, const char *fmt, va_list ap)
{
    char text[1024];
    vsnprintf(text, sizeof(text), fmt, ap);
    size_t n = 0;
    for (const char *c = text[0] == ' ' ? text + 1 : text; *c && n + 4 < size; c++) {
        out[n++] = *c;
        if (*c == '\n') {
            out[n++] = '#';
            out[n++] = ' ';
        }
    }
    out[n] = '\0';
}

void tap_fail(int fatal, const char *file, int line, const char *expr, const char *fmt, ...)
{
    char text[1200];
    va_list ap;
    va_start(ap, fmt);
    format_comment(text, sizeof(text), fmt, ap);
    va_end(ap);
    char report[2400]; /* one write, as other threads may print too */
    if (expr)
        snprintf(report, sizeof(report), "# %s:%d: assertion failed: %s%s%s\n%s", file, line, expr,
                 *text ? ": " : "", text, note);
    else
        snprintf(report, sizeof(report), "# %s:%d: %s\n", file, line, text);
    fputs(report, stdout);
    fflush(stdout);
    note[0] = '\0';
    current_failed = 1;
    if (fatal) finish(NULL);
}

void tap_skip(const char *fmt, ...)
{
    char message[512], directive[540];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    for (char *c = message; *c; c++) /* the reason is on the result line */
        if (*c == '\n') *c = ' ';
    snprintf(directive, sizeof(directive), " # SKIP%s", message);
    finish(directive);
}

void tap_log(const char *fmt, ...)
{
    char text[1200];
    va_list ap;
    va_start(ap, fmt);
    format_comment(text, sizeof(text), fmt, ap);
    va_end(ap);
    printf("# %s\n", text);
    fflush(stdout);
}

static void __attribute__((noreturn)) run_child(struct tap_test *t)
{
    current = t;
    if (t->init) t->init();
    t->fn();
    finish(NULL);
}

/* Runs test t in a child; returns true if it passed or skipped.
 * Otherwise *reason is empty if the child printed its `not ok`, else why it
 * ended without a result. */
#ifdef _WIN32
static bool run_test(struct tap_test *t, const char *self, char **reason)
{
    char cmd[MAX_PATH + 300];
    snprintf(cmd, sizeof(cmd), "\"%s\" --child %s/%s", self, t->suite, t->name);
    HANDLE out = (HANDLE)_get_osfhandle(_fileno(stdout));
    SetHandleInformation(out, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT);
    STARTUPINFOA si = {.cb = sizeof(si), .dwFlags = STARTF_USESTDHANDLES};
    si.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
    si.hStdOutput = out;
    si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
    PROCESS_INFORMATION pi;
    static char text[64];
    *reason = text;
    /* Wine's CreateProcess fails now and then on a loaded machine
     * (ERROR_INTERNAL_ERROR, 1359, seen in CI): the harness, not the test,
     * failed, so it tries again a few times before it reports. */
    DWORD err = 0;
    for (int attempt = 0; attempt < 5; attempt++) {
        if (attempt > 0) Sleep(200u << attempt);
        if (CreateProcessA(self, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi)) {
            err = 0;
            break;
        }
        err = GetLastError();
        if (err == ERROR_FILE_NOT_FOUND || err == ERROR_ACCESS_DENIED) break;
    }
    if (err != 0) {
        snprintf(text, sizeof(text), "CreateProcess failed: error %lu", err);
        return false;
    }
    DWORD wait = t->timeout > 0 ? (DWORD)(t->timeout * 1000) : INFINITE;
    DWORD code = 0;
    if (WaitForSingleObject(pi.hProcess, wait) == WAIT_TIMEOUT) {
        TerminateProcess(pi.hProcess, 1);
        WaitForSingleObject(pi.hProcess, INFINITE);
        snprintf(text, sizeof(text), "timed out after %g s", t->timeout);
        code = (DWORD)-1;
    } else {
        GetExitCodeProcess(pi.hProcess, &code);
        if (code == TAP_EXIT_PRINTED || code == TAP_EXIT_FAILED)
            text[0] = '\0';
        else
            snprintf(text, sizeof(text), "exited with code 0x%lx", code);
    }
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    return code == TAP_EXIT_PRINTED;
}
#else
static bool run_test(struct tap_test *t, const char *self, char **reason)
{
    static char text[64];
    *reason = text;
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(text, sizeof(text), "fork failed");
        return false;
    }
    if (pid == 0) {
        if (t->timeout > 0) alarm((unsigned)(t->timeout + 0.999));
        run_child(t);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        ;
    if (WIFEXITED(status)) {
        int code = WEXITSTATUS(status);
        if (code == TAP_EXIT_PRINTED || code == TAP_EXIT_FAILED)
            text[0] = '\0';
        else
            snprintf(text, sizeof(text), "exited with status %d", code);
        return code == TAP_EXIT_PRINTED;
    }
    if (WTERMSIG(status) == SIGALRM)
        snprintf(text, sizeof(text), "timed out after %g s", t->timeout);
    else
        snprintf(text, sizeof(text), "killed by signal %d", WTERMSIG(status));
    return false;
}
#endif

static bool glob_match(const char *p, const char *s)
{
    if (*p == '\0') return *s == '\0';
    if (*p == '*') return glob_match(p + 1, s) || (*s && glob_match(p, s + 1));
    return *s && (*p == '?' || *p == *s) && glob_match(p + 1, s + 1);
}

static bool selected(const struct tap_test *t, const char *filter)
{
    char full[256];
    snprintf(full, sizeof(full), "%s/%s", t->suite, t->name);
    return !filter || glob_match(filter, full);
}

int main(int argc, char **argv)
{
    const char *filter = NULL, *self = argv[0];
    bool list = false;
#ifdef _WIN32
    _setmode(_fileno(stdout), _O_BINARY); /* TAP lines end in \n, not \r\n */
    main_thread = GetCurrentThreadId();
    char path[MAX_PATH];
    if (GetModuleFileNameA(NULL, path, sizeof(path))) self = path;
#else
    main_thread = pthread_self();
#endif
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--child") == 0 && i + 1 < argc) {
            for (struct tap_test *t = tests; t; t = t->next)
                if (selected(t, argv[i + 1])) run_child(t);
            fprintf(stderr, "%s: no test %s\n", argv[0], argv[i + 1]);
            return 2;
        } else if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc) {
            filter = argv[++i];
        } else if (strcmp(argv[i], "--list") == 0) {
            list = true;
        } else if (strncmp(argv[i], "--tap=", 6) == 0) {
            if (!freopen(argv[i] + 6, "wb", stdout)) {
                perror(argv[i] + 6);
                return 2;
            }
        } else if (strcmp(argv[i], "--tap") != 0) {
            fprintf(stderr, "usage: %s [--list] [--filter GLOB] [--tap[=FILE]]\n", argv[0]);
            return 2;
        }
    }
    int planned = 0;
    for (struct tap_test *t = tests; t; t = t->next) {
        if (!selected(t, filter)) continue;
        planned++;
        if (list) printf("%s/%s\n", t->suite, t->name);
    }
    if (list) return 0;
    printf("TAP version 13\n1..%d\n", planned);
    fflush(stdout);
    int failed = 0;
    for (struct tap_test *t = tests; t; t = t->next) {
        if (!selected(t, filter)) continue;
        char *reason;
        if (run_test(t, self, &reason)) continue;
        failed++;
        if (reason[0]) {
            printf("not ok - %s::%s # %s\n", t->suite, t->name, reason);
            fflush(stdout);
        }
    }
    return failed ? 1 : 0;
}
