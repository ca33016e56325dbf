/* SPDX-License-Identifier: MIT */
/* Subprocesses on Windows, as asyncio's Proactor loop runs them.
 *
 * - Spawning is CreateProcessW. The program is o->file (else argv[0]),
 *   found with SearchPathW (".exe" added when it has no extension): a
 *   missing one is -ENOENT from eddy_process_spawn, not a child that fails.
 *   argv becomes one command line quoted by the rules the Microsoft C
 *   runtime (and CommandLineToArgvW) parse it back with; env becomes a
 *   UTF-16 environment block; NEW_GROUP is CREATE_NEW_PROCESS_GROUP.
 * - Stdio: a piped one is a named pipe (lib/pipe_win.c) whose loop end is
 *   overlapped and becomes an eddy stream; the child's end, a null device
 *   or a handle of the parent's is an inheritable handle made for this
 *   spawn alone, in STARTUPINFO, and PROC_THREAD_ATTRIBUTE_HANDLE_LIST lets
 *   the child inherit those and nothing else: spawns on other threads,
 *   whose inheritable handles exist at the same moment, do not leak their
 *   pipe ends into this child (which would keep a pipe from ever reading
 *   end of file).
 * - Exits: the process handle turns signalled. A wait registers it with
 *   RegisterWaitForSingleObject; the callback, on a Windows pool thread,
 *   hands an op to the loop (eddy__loop_post_completion: a packet on its
 *   completion port), whose completion wakes the task. Cancelling unregisters
 *   the wait, waiting for a callback already running, so the op is posted
 *   either never or before the cancellation decides.
 * - No zombies on Windows: a process object holds a handle, and
 *   eddy_process_free closes it whatever the child does. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "pipe.h"

struct eddy_process {
    struct eddy__process_head head; /* first: the piped stdio */
    HANDLE process;
    DWORD pid;
    bool reaped;
    int status;    /* as waitpid would give it, once reaped */
    int killed_by; /* the signal eddy_process_kill ended it with, or 0 */
};

eddy_support eddy__subprocess_support(void)
{
    return EDDY_NATIVE;
}

/* ---- the command line ------------------------------------------------------- */

/* A growable UTF-16 string. */
struct wbuf {
    wchar_t *s;
    size_t len, cap;
    bool failed;
};

static void wbuf_put(struct wbuf *b, wchar_t c, size_t n)
{
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap)
            cap *= 2;
        wchar_t *s = realloc(b->s, cap * sizeof *s);
        if (!s) {
            b->failed = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    for (size_t i = 0; i < n; i++)
        b->s[b->len++] = c;
    b->s[b->len] = 0;
}

/* Appends arg as the C runtime parses it back: bare when it has no space,
 * tab or quote (and is not empty); else quoted, each quote preceded by a
 * backslash, and the backslashes before a quote (or before the closing
 * one) doubled. */
static void quote_arg(struct wbuf *b, const wchar_t *arg)
{
    if (*arg && !wcspbrk(arg, L" \t\n\v\"")) {
        for (; *arg; arg++)
            wbuf_put(b, *arg, 1);
        return;
    }
    wbuf_put(b, L'"', 1);
    for (;; arg++) {
        size_t slashes = 0;
        while (*arg == L'\\') {
            arg++;
            slashes++;
        }
        if (*arg == 0) {
            wbuf_put(b, L'\\', slashes * 2);
            break;
        }
        if (*arg == L'"') {
            wbuf_put(b, L'\\', slashes * 2 + 1);
            wbuf_put(b, L'"', 1);
        } else {
            wbuf_put(b, L'\\', slashes);
            wbuf_put(b, *arg, 1);
        }
    }
    wbuf_put(b, L'"', 1);
}

/* argv as one command line (command), or env as an environment block (each
 * string and its NUL, then one more NUL). NULL on failure, with -EINVAL
 * (not UTF-8) or -ENOMEM in *err. */
static wchar_t *wide_block(char *const *v, bool command, int *err)
{
    struct wbuf b = {0};
    for (size_t i = 0; v[i]; i++) {
        wchar_t *w = eddy__win_wide(v[i]);
        if (!w) {
            free(b.s);
            *err = -EINVAL;
            return NULL;
        }
        if (command && i) wbuf_put(&b, L' ', 1);
        if (command) quote_arg(&b, w);
        for (wchar_t *c = w; !command && *c; c++)
            wbuf_put(&b, *c, 1);
        if (!command) wbuf_put(&b, 0, 1);
        free(w);
    }
    wbuf_put(&b, 0, 1); /* a command line's end is the NUL wbuf keeps */
    if (b.failed) {
        free(b.s);
        *err = -ENOMEM;
        return NULL;
    }
    return b.s;
}

/* The program's full path: SearchPathW looks in the program's directory,
 * the current one, the system's and PATH, adding ".exe" where the name has
 * no extension. -ENOENT when it is nowhere. */
static wchar_t *find_program(const char *file, int *err)
{
    wchar_t *name = eddy__win_wide(file);
    if (!name) {
        *err = -EINVAL;
        return NULL;
    }
    wchar_t *path = NULL;
    DWORD n = SearchPathW(NULL, name, L".exe", 0, NULL, NULL);
    if (n > 0 && (path = malloc((size_t)n * sizeof *path)) != NULL) {
        DWORD m = SearchPathW(NULL, name, L".exe", n, path, NULL);
        if (m == 0 || m >= n) {
            free(path);
            path = NULL;
            *err = -ENOENT;
        }
    } else {
        *err = n == 0 ? -ENOENT : -ENOMEM;
    }
    free(name);
    if (path && (GetFileAttributesW(path) & FILE_ATTRIBUTE_DIRECTORY)) {
        free(path);
        path = NULL;
        *err = -EACCES;
    }
    return path;
}

/* ---- the child's stdio ----------------------------------------------------------- */

/* The handle slot i of the child gets, made inheritable for this spawn:
 * *h, or NULL for none (a parent without that stdio). */
static int child_handle(struct eddy_process *p, const eddy_process_options *o, int i, HANDLE *h)
{
    HANDLE source;
    HANDLE self = GetCurrentProcess();
    SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, TRUE};
    switch (o->stdio[i].mode) {
    case EDDY_STDIO_PIPE: {
        intptr_t server, client;
        int err = eddy__win_pipe_pair(&server, &client, i != 0, false, true);
        if (err < 0) return err;
        struct eddy_sock *s;
        err = eddy__sock_adopt(&s, server, AF_UNIX, SOCK_STREAM, true);
        if (err < 0) CloseHandle((HANDLE)server);
        if (err == 0) err = eddy__process_stdio_stream(p->head.stdio, i, s);
        if (err < 0) {
            CloseHandle((HANDLE)client);
            return err;
        }
        *h = (HANDLE)client;
        return 0;
    }
    case EDDY_STDIO_NULL:
        *h = CreateFileW(L"NUL", GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE,
                         &sa, OPEN_EXISTING, 0, NULL);
        return *h == INVALID_HANDLE_VALUE ? eddy__win_error(GetLastError()) : 0;
    case EDDY_STDIO_FD:
        source = (HANDLE)o->stdio[i].fd;
        break;
    default: /* EDDY_STDIO_INHERIT */
        source = GetStdHandle(i == 0   ? STD_INPUT_HANDLE
                              : i == 1 ? STD_OUTPUT_HANDLE
                                       : STD_ERROR_HANDLE);
        if (source == NULL || source == INVALID_HANDLE_VALUE) {
            *h = NULL;
            return 0;
        }
        break;
    }
    if (DuplicateHandle(self, source, self, h, 0, TRUE, DUPLICATE_SAME_ACCESS)) return 0;
    *h = NULL;
    if (o->stdio[i].mode == EDDY_STDIO_FD) return -EBADF;
    return 0; /* a stdio the parent cannot pass on: the child has none */
}

bool eddy__process_fd_open(intptr_t fd)
{
    DWORD flags;
    return fd != 0 && fd != -1 && GetHandleInformation((HANDLE)fd, &flags);
}

/* CreateProcessW with the child's stdio in handles (NULLs skipped), which
 * alone it inherits. */
static int create_process(struct eddy_process *p, const eddy_process_options *o,
                          const wchar_t *program, wchar_t *cmdline, wchar_t *env,
                          const wchar_t *cwd, HANDLE handles[3])
{
    HANDLE list[3];
    DWORD n = 0;
    for (int i = 0; i < 3; i++)
        if (handles[i]) list[n++] = handles[i];
    SIZE_T size = 0;
    (void)InitializeProcThreadAttributeList(NULL, 1, 0, &size);
    LPPROC_THREAD_ATTRIBUTE_LIST attrs = malloc(size);
    if (!attrs) return -ENOMEM;
    if (!InitializeProcThreadAttributeList(attrs, 1, 0, &size)) {
        int err = eddy__win_error(GetLastError());
        free(attrs);
        return err;
    }
    int err = 0;
    if (n && !UpdateProcThreadAttribute(attrs, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST, list,
                                        n * sizeof list[0], NULL, NULL))
        err = eddy__win_error(GetLastError());
    STARTUPINFOEXW si;
    memset(&si, 0, sizeof si);
    si.StartupInfo.cb = sizeof si;
    si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    si.StartupInfo.hStdInput = handles[0];
    si.StartupInfo.hStdOutput = handles[1];
    si.StartupInfo.hStdError = handles[2];
    si.lpAttributeList = attrs;
    DWORD flags = CREATE_UNICODE_ENVIRONMENT | EXTENDED_STARTUPINFO_PRESENT;
    if (o->flags & EDDY_PROCESS_NEW_GROUP) flags |= CREATE_NEW_PROCESS_GROUP;
    PROCESS_INFORMATION pi;
    /* ERROR_INTERNAL_ERROR is transient (Wine gives it now and then on a
     * loaded machine): tried again, a few times, before it is reported. */
    for (int attempt = 0; err == 0; attempt++) {
        if (CreateProcessW(program, cmdline, NULL, NULL, n > 0, flags, env, cwd, &si.StartupInfo,
                           &pi))
            break;
        DWORD code = GetLastError();
        if (code != ERROR_INTERNAL_ERROR || attempt == 3)
            err = eddy__win_error(code);
        else
            Sleep(10u << attempt);
    }
    DeleteProcThreadAttributeList(attrs);
    free(attrs);
    if (err < 0) return err;
    CloseHandle(pi.hThread);
    p->process = pi.hProcess;
    p->pid = pi.dwProcessId;
    return 0;
}

EDDY_API int eddy_process_spawn(eddy_process **out, const eddy_process_options *user)
{
    eddy_process_options o;
    int err = eddy__process_begin(out, user, &o);
    if (err < 0) return err;
    struct eddy_process *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    /* Each step sets err when it fails, and the later ones do not run. */
    wchar_t *cmdline = NULL, *env = NULL, *cwd = NULL;
    wchar_t *program = find_program(o.file ? o.file : o.argv[0], &err);
    if (program) cmdline = wide_block(o.argv, true, &err);
    if (cmdline && o.env) env = wide_block(o.env, false, &err);
    if (cmdline && o.cwd && !(cwd = eddy__win_wide(o.cwd))) err = -EINVAL;
    HANDLE handles[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3 && cmdline && err == 0; i++)
        err = child_handle(p, &o, i, &handles[i]);
    if (cmdline && err == 0) err = create_process(p, &o, program, cmdline, env, cwd, handles);
    for (int i = 0; i < 3; i++)
        if (handles[i]) CloseHandle(handles[i]);
    free(program);
    free(cmdline);
    free(env);
    free(cwd);
    if (err < 0) {
        eddy__process_stdio_close(p->head.stdio);
        free(p);
        return err;
    }
    *out = p;
    return 0;
}

/* ---- waiting ---------------------------------------------------------------------- */

/* Reaps p if its handle is signalled: its exit code as waitpid's status
 * (the low 8 bits as WEXITSTATUS), or the signal eddy_process_kill ended it
 * with. */
static void try_reap(struct eddy_process *p)
{
    if (p->reaped || WaitForSingleObject(p->process, 0) != WAIT_OBJECT_0) return;
    DWORD code = 0;
    (void)GetExitCodeProcess(p->process, &code);
    p->reaped = true;
    if (p->killed_by && code == 128u + (unsigned)p->killed_by)
        p->status = p->killed_by;
    else
        p->status = (int)((code & 0xff) << 8);
}

/* One wait on the process handle; lives in the waiting task's frame. */
struct exit_wait {
    struct eddy_op op; /* handed to the loop by the callback */
    struct eddy_task *task;
    struct eddy_loop *loop;
    HANDLE registration; /* RegisterWaitForSingleObject's; NULL once unregistered */
    volatile LONG fired; /* the callback ran: op is on its way to the loop */
};

/* A Windows pool thread: the process has exited. */
static void CALLBACK exit_signalled(void *arg, BOOLEAN timed_out)
{
    struct exit_wait *w = arg;
    (void)timed_out;
    InterlockedExchange(&w->fired, 1);
    eddy__loop_post_completion(w->loop, &w->op);
}

static void unregister(struct exit_wait *w)
{
    if (!w->registration) return;
    /* INVALID_HANDLE_VALUE: returns once a callback that began has ended. */
    (void)UnregisterWaitEx(w->registration, INVALID_HANDLE_VALUE);
    w->registration = NULL;
}

/* The loop's thread: the op the callback posted. */
static void exit_wait_complete(struct eddy_op *op)
{
    struct exit_wait *w = eddy__container_of(op, struct exit_wait, op);
    unregister(w);
    eddy__loop_op_ended(w->loop);
    eddy__task_wake(w->task, 0);
}

static void exit_wait_abort(struct eddy_task *t)
{
    struct exit_wait *w = t->wait_data;
    unregister(w);
    if (InterlockedCompareExchange(&w->fired, 0, 0)) return; /* the op's completion wakes t */
    eddy__loop_op_ended(w->loop);
    eddy__task_wake(t, -ECANCELED);
}

EDDY_API int eddy_process_wait(eddy_process *p, int *status)
{
    struct eddy_task *t = eddy__current_task();
    if (!t) return -EPERM;
    if (!p) return -EINVAL;
    for (;;) {
        try_reap(p);
        if (p->reaped) {
            if (status) *status = p->status;
            return 0;
        }
        if (eddy__task_cancelled(t)) return -ECANCELED;
        struct exit_wait w = {.task = t, .loop = t->loop};
        w.op.complete = exit_wait_complete;
        w.op.state = EDDY_OP_STATE_IN_FLIGHT;
        eddy__list_init(&w.op.link);
        if (!RegisterWaitForSingleObject(&w.registration, p->process, exit_signalled, &w, INFINITE,
                                         WT_EXECUTEONLYONCE))
            return eddy__win_error(GetLastError());
        eddy__loop_op_started(t->loop);
        t->abort_wait = exit_wait_abort;
        t->wait_data = &w;
        int r = (int)eddy__task_suspend(t);
        if (r < 0) return r;
    }
}

/* SIGKILL and SIGTERM end the child (TerminateProcess, exit code 128 +
 * signum; the wait reports it killed by that signal); 0 checks that it has
 * not been reaped; Windows has no way to deliver any other signal to
 * another process: -ENOTSUP. */
EDDY_API int eddy_process_kill(eddy_process *p, int signum)
{
    if (!p || signum < 0 || signum >= NSIG) return -EINVAL;
    if (p->reaped) return -ESRCH;
    if (signum == 0) return 0;
    if (signum != SIGKILL && signum != SIGTERM) return -ENOTSUP;
    if (WaitForSingleObject(p->process, 0) == WAIT_OBJECT_0) return 0; /* exited: a zombie's kill */
    if (!TerminateProcess(p->process, 128u + (unsigned)signum)) {
        DWORD code = 0;
        /* ERROR_ACCESS_DENIED once it is exiting: it ends anyway */
        if (GetExitCodeProcess(p->process, &code) && code != STILL_ACTIVE) return 0;
        return eddy__win_error(GetLastError());
    }
    if (!p->killed_by) p->killed_by = signum;
    return 0;
}

EDDY_API intptr_t eddy_process_pid(const eddy_process *p)
{
    return p ? (intptr_t)p->pid : -EINVAL;
}

EDDY_API void eddy_process_free(eddy_process *p)
{
    if (!p) return;
    eddy__process_stdio_close(p->head.stdio);
    CloseHandle(p->process); /* the child goes on; nothing is left to reap */
    free(p);
}
