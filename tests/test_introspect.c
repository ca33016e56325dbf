/* SPDX-License-Identifier: MIT */
/* Seeing inside a running loop: task names and ids, eddy_loop_metrics,
 * eddy_loop_dump (docs/debugging.md). Linked with -export-dynamic and built
 * with frame pointers, so that dladdr names this file's functions. */
#include <criterion/criterion.h>

#include <unistd.h>

#include "helpers.h"

/* ---- names and ids ---------------------------------------------------------- */

/* exported, for dladdr */
intptr_t named_by_its_function(void *arg);
intptr_t named_by_its_function(void *arg)
{
    (void)arg;
    return 0;
}

Test(introspect, names_and_ids, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_task *a = eddy_spawn(loop, named_by_its_function, NULL);
    eddy_task *b = eddy_spawn(loop, named_by_its_function, NULL);
    cr_assert(ne(ptr, a, NULL));
    cr_assert(ne(ptr, b, NULL));
    cr_assert(gt(u64, eddy_task_id(a), 0));
    cr_assert(gt(u64, eddy_task_id(b), eddy_task_id(a)), "ids grow, never reused");
    cr_assert(eq(u64, eddy_task_id(NULL), 0));
    cr_assert(eq(str, (char *)eddy_task_name(a), "named_by_its_function"));
    cr_assert(eq(int, eddy_task_set_name(a, "worker"), 0));
    cr_assert(eq(str, (char *)eddy_task_name(a), "worker"));
    char longer[100];
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    cr_assert(eq(int, eddy_task_set_name(b, longer), 0));
    cr_assert(eq(sz, strlen(eddy_task_name(b)), EDDY_TASK_NAME_MAX), "cut at the limit");
    cr_assert(eq(int, eddy_task_set_name(NULL, "x"), -EINVAL));
    cr_assert(eq(int, eddy_task_set_name(a, NULL), -EINVAL));
    cr_assert(eq(ptr, (void *)eddy_task_name(NULL), NULL));
    uint64_t ida = eddy_task_id(a);
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(u64, eddy_task_id(a), ida), "the id stays after the task ended");
    cr_assert(eq(int, eddy_task_join(a, NULL), 0));
    cr_assert(eq(int, eddy_task_join(b, NULL), 0));
    eddy_task *c = eddy_spawn(loop, named_by_its_function, NULL);
    cr_assert(gt(u64, eddy_task_id(c), ida + 1));
    eddy_task_detach(c);
    eddy_loop_free(loop);
}

/* A server names its tasks server:PORT/accept and server:PORT/conn-N. */
static char conn_name[64];

static intptr_t remember_name(eddy_stream *st, void *arg)
{
    (void)st;
    (void)arg;
    snprintf(conn_name, sizeof conn_name, "%s", eddy_task_name(eddy_task_current()));
    return 0;
}

static intptr_t serve_one(void *arg)
{
    (void)arg;
    eddy_sock *listener, *client;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    int port = eddy_sock_port(listener);
    eddy_server *srv;
    cr_assert(eq(int, eddy_serve(&srv, listener, remember_name, NULL), 0));
    cr_assert(eq(int, eddy_tcp_connect(&client, "127.0.0.1", (uint16_t)port), 0));
    while (!conn_name[0])
        cr_assert(eq(int, eddy_sleep(NS_PER_MS), 0));
    char want[64];
    snprintf(want, sizeof want, "server:%d/conn-1", port);
    cr_assert(eq(str, conn_name, want));
    (void)eddy_sock_close(client);
    (void)eddy_server_close(srv);
    return eddy_server_wait(srv);
}

Test(introspect, servers_name_their_connections, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    cr_assert(eq(int, run_task(loop, serve_one, NULL, NULL), 0));
    eddy_loop_free(loop);
}

/* ---- metrics ---------------------------------------------------------------- */

static void check_sums(const eddy_loop_metrics_t *m)
{
    cr_assert(eq(u64, m->ops_submitted, m->ops_completed + m->ops_in_flight),
              "submitted %llu = completed %llu + in flight %llu",
              (unsigned long long)m->ops_submitted, (unsigned long long)m->ops_completed,
              (unsigned long long)m->ops_in_flight);
}

static eddy_loop_metrics_t metrics_now(void)
{
    eddy_loop_metrics_t m = {.size = sizeof m};
    cr_assert(eq(int, eddy_loop_metrics(eddy_loop_current(), &m), 0));
    check_sums(&m);
    return m;
}

static intptr_t echo_once(void *arg)
{
    eddy_sock *listener = arg, *conn;
    if (eddy_accept(listener, &conn) < 0) return -1;
    char buf[16];
    ssize_t n = eddy_recv(conn, buf, sizeof buf);
    if (n > 0) n = eddy_send(conn, buf, (size_t)n);
    (void)eddy_sock_close(conn);
    return n;
}

static intptr_t workload(void *arg)
{
    (void)arg;
    eddy_loop_metrics_t m0 = metrics_now();
    cr_assert(eq(u64, m0.tasks_alive, 1));
    /* a timer */
    cr_assert(eq(int, eddy_sleep(20 * NS_PER_MS), 0));
    /* sockets: the server's accept stays in flight while we look */
    eddy_sock *listener, *client;
    cr_assert(eq(int, eddy_tcp_listen(&listener, "127.0.0.1", 0, 0), 0));
    eddy_task *server = eddy_spawn(NULL, echo_once, listener);
    cr_assert(eq(int, eddy_yield(), 0));
    eddy_loop_metrics_t m1 = metrics_now();
    cr_assert(ge(u64, m1.ops_in_flight, 1), "the accept is in flight");
    cr_assert(eq(u64, m1.tasks_alive, 2));
    cr_assert(
        eq(int, eddy_tcp_connect(&client, "127.0.0.1", (uint16_t)eddy_sock_port(listener)), 0));
    cr_assert(eq(long, (long)eddy_send(client, "ping", 4), 4));
    char buf[4];
    cr_assert(eq(long, (long)eddy_recv(client, buf, 4), 4));
    intptr_t echoed;
    cr_assert(eq(int, eddy_task_join(server, &echoed), 0));
    cr_assert(eq(long, (long)echoed, 4));
    (void)eddy_sock_close(client);
    (void)eddy_sock_close(listener);
    /* files */
    char path[] = "/tmp/eddy-introspect-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(ge(int, fd, 0));
    close(fd);
    eddy_file *f;
    cr_assert(eq(int, eddy_file_open(&f, path, O_RDWR, 0), 0));
    cr_assert(eq(long, (long)eddy_file_write(f, "data", 4, 0), 4));
    cr_assert(eq(long, (long)eddy_file_read(f, buf, 4, 0), 4));
    cr_assert(eq(int, eddy_file_close(f), 0));
    unlink(path);
    /* a step that runs 5 ms without awaiting */
    int64_t until = eddy_now(NULL) + 5 * NS_PER_MS;
    while (eddy_now(NULL) < until) {
    }
    cr_assert(eq(int, eddy_yield(), 0));
    eddy_loop_metrics_t m2 = metrics_now();
    cr_assert(gt(u64, m2.ops_submitted, m1.ops_submitted + 3), "sockets and files went in flight");
    cr_assert(eq(u64, m2.ops_in_flight, 0));
    cr_assert(gt(u64, m2.iterations, m1.iterations));
    cr_assert(ge(u64, m2.idle_ns, 15 * NS_PER_MS), "the sleep was idle: %llu ns",
              (unsigned long long)m2.idle_ns);
    cr_assert(ge(u64, m2.longest_step_ns, 5 * NS_PER_MS));
    cr_assert(gt(u64, m2.run_ns, 0));
    cr_assert(ge(u64, m2.allocations, 2), "the two tasks");
    cr_assert(eq(u64, m2.tasks_alive, 1));
    cr_assert(eq(u64, m2.tasks_ready, 0));
    return 0;
}

Test(introspect, metrics_add_up, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = loop_with(EDDY_LOOP_METRICS, 0);
    cr_assert(eq(int, run_task(loop, workload, NULL, NULL), 0));
    eddy_loop_metrics_t m = {0};
    cr_assert(eq(int, eddy_loop_metrics(loop, &m), 0), "size 0: the first layout");
    cr_assert(eq(sz, m.size, sizeof m));
    check_sums(&m);
    cr_assert(eq(u64, m.tasks_alive, 0));
    eddy_loop_free(loop);
}

Test(introspect, metrics_fill_only_the_size_given, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    struct {
        eddy_loop_metrics_t m;
        char after[8];
    } s;
    memset(&s, 0x55, sizeof s);
    s.m.size = offsetof(eddy_loop_metrics_t, idle_ns);
    cr_assert(eq(int, eddy_loop_metrics(loop, &s.m), 0));
    cr_assert(eq(u64, s.m.iterations, 0));
    cr_assert(eq(u64, s.m.idle_ns, 0x5555555555555555ull), "left alone");
    s.m.size = 4;
    cr_assert(eq(int, eddy_loop_metrics(loop, &s.m), -EINVAL));
    cr_assert(eq(int, eddy_loop_metrics(NULL, &s.m), -EINVAL));
    cr_assert(eq(int, eddy_loop_metrics(loop, NULL), -EINVAL));
    eddy_loop_metrics_t plain = {.size = sizeof plain};
    cr_assert(eq(int, eddy_loop_metrics(loop, &plain), 0));
    cr_assert(eq(u64, plain.idle_ns, 0), "no times without EDDY_LOOP_METRICS");
    eddy_loop_free(loop);
}

/* ---- dump ------------------------------------------------------------------- */

static eddy_future *never; /* nobody completes it */

/* exported, for dladdr */
intptr_t sleeper_fn(void *arg);
intptr_t sleeper_fn(void *arg)
{
    (void)arg;
    int err = eddy_sleep(3600 * NS_PER_SEC);
    __asm__ volatile("" ::: "memory"); /* not a tail call: the frame stays */
    return err;
}

/* exported, for dladdr */
intptr_t joiner_fn(void *arg);
intptr_t joiner_fn(void *arg)
{
    intptr_t r = eddy_task_join(arg, NULL);
    __asm__ volatile("" ::: "memory");
    return r;
}

/* exported, for dladdr */
intptr_t child_fn(void *arg);
intptr_t child_fn(void *arg)
{
    (void)arg;
    intptr_t r = eddy_await(never, NULL);
    __asm__ volatile("" ::: "memory");
    return r;
}

/* exported, for dladdr */
intptr_t parent_fn(void *arg);
intptr_t parent_fn(void *arg)
{
    (void)arg;
    eddy_group *g = eddy_group_new(NULL);
    eddy_task *c1 = eddy_group_spawn(g, child_fn, NULL);
    eddy_task *c2 = eddy_group_spawn(g, child_fn, NULL);
    (void)eddy_task_set_name(c1, "child-1");
    (void)eddy_task_set_name(c2, "child-2");
    intptr_t r = eddy_group_wait(g);
    eddy_group_free(g);
    __asm__ volatile("" ::: "memory");
    return r;
}

static char *dumped;

/* exported, for dladdr */
intptr_t dump_main(void *arg);
intptr_t dump_main(void *arg)
{
    (void)arg;
    never = eddy_future_new(NULL);
    eddy_task *sleeper = eddy_spawn(NULL, sleeper_fn, NULL);
    (void)eddy_task_set_name(sleeper, "sleeper");
    eddy_task *joiner = eddy_spawn(NULL, joiner_fn, sleeper);
    (void)eddy_task_set_name(joiner, "joiner");
    eddy_task *parent = eddy_spawn(NULL, parent_fn, NULL);
    (void)eddy_task_set_name(parent, "parent");
    for (int i = 0; i < 5; i++)
        cr_assert(eq(int, eddy_yield(), 0));
    size_t len;
    FILE *out = open_memstream(&dumped, &len);
    cr_assert(ne(ptr, out, NULL));
    cr_assert(eq(int, eddy_loop_dump(eddy_loop_current(), out), 0));
    fclose(out);
    eddy_task_cancel(parent);
    eddy_task_cancel(joiner);
    eddy_task_cancel(sleeper);
    (void)eddy_task_join(parent, NULL);
    (void)eddy_task_join(joiner, NULL);
    eddy_future_unref(never);
    return 0;
}

/* The block of lines about the task named name, up to the next task's. */
static char *task_block(const char *name)
{
    char head[64];
    snprintf(head, sizeof head, "\"%s\": ", name);
    char *start = strstr(dumped, head);
    cr_assert(ne(ptr, start, NULL), "no task %s in:\n%s", name, dumped);
    char *end = strstr(start + 1, "\ntask ");
    if (!end) end = strstr(start, "\nawaited by:");
    return strndup(start, end ? (size_t)(end - start) : strlen(start));
}

static void expect(const char *block, const char *what)
{
    cr_assert(ne(ptr, strstr(block, what), NULL), "\"%s\" not in:\n%s\n--- whole dump:\n%s", what,
              block, dumped);
}

Test(introspect, dump_shows_states_awaiters_and_backtraces, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    eddy_task *main = eddy_spawn(loop, dump_main, NULL);
    (void)eddy_task_set_name(main, "main");
    cr_assert(eq(int, eddy_loop_run(loop), 0));
    cr_assert(eq(int, eddy_task_join(main, NULL), 0));
    eddy_loop_free(loop);

    if (getenv("EDDY_TEST_SHOW_DUMP")) fputs(dumped, stderr);
    char *b = task_block("main");
    expect(b, "running");
    expect(b, "dump_main+");
    free(b);
    b = task_block("sleeper");
    expect(b, "sleeping until");
    expect(b, "awaited by task ");
    expect(b, "\"joiner\" (join)");
    expect(b, "sleeper_fn+");
    free(b);
    b = task_block("joiner");
    expect(b, "awaiting task ");
    expect(b, "(sleeper)");
    expect(b, "joiner_fn+");
    free(b);
    b = task_block("parent");
    expect(b, "waiting for group");
    expect(b, "parent_fn+");
    free(b);
    b = task_block("child-1");
    expect(b, "awaiting future");
    expect(b, "\"parent\" (group)");
    expect(b, "child_fn+");
    free(b);
    /* the tree: roots are the tasks nobody awaits */
    char *tree = strstr(dumped, "awaited by:\n");
    cr_assert(ne(ptr, tree, NULL));
    expect(tree, "└── task ");
    expect(tree, "\"sleeper\"");
    /* sleeper sits under joiner, the children under parent */
    char *joiner = strstr(tree, "\"joiner\"\n");
    char *sleeper = strstr(tree, "\"sleeper\"\n");
    cr_assert(ne(ptr, joiner, NULL));
    cr_assert(ne(ptr, sleeper, NULL));
    cr_assert(lt(ptr, joiner, sleeper), "%s", tree);
    char *line = sleeper;
    while (line > tree && line[-1] != '\n')
        line--;
    cr_assert(eq(int, strncmp(line, "    ", 4) == 0 || strncmp(line, "│   ", 6) == 0, 1),
              "sleeper is indented below joiner:\n%s", tree);
    free(dumped);
}

Test(introspect, dump_refuses_bad_input, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    cr_assert(eq(int, eddy_loop_dump(NULL, stdout), -EINVAL));
    cr_assert(eq(int, eddy_loop_dump(loop, NULL), -EINVAL));
    eddy_loop_free(loop);
}

/* ---- the stall detector ------------------------------------------------------ */

static int64_t wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

static volatile int64_t spin_until;
static char *stall_report; /* what stderr held at the end of the spin */

/* The busy loop the detector must catch and name, while it still runs: the
 * report is read from stderr before this returns. */
intptr_t busy_spin_for_the_detector(void *arg);
intptr_t busy_spin_for_the_detector(void *arg)
{
    FILE *captured = arg;
    /* mostly spinning here, rarely in clock_gettime (whose frames, built
     * without frame pointers, would hide this one from the walk) */
    while (wall_now() < spin_until)
        for (volatile int i = 0; i < 1000000; i++) {
        }
    /* still inside the step: whatever the detector said is there already */
    fflush(stderr);
    int fd = fileno(captured);
    off_t end = lseek(fd, 0, SEEK_END);
    stall_report = calloc(1, (size_t)end + 1);
    if (end > 0 && pread(fd, stall_report, (size_t)end, 0) < 0) stall_report[0] = '\0';
    return 0;
}

Test(introspect, stall_detector_names_the_busy_function_while_it_runs, .timeout = TEST_TIMEOUT)
{
#if !defined(__linux__) || !(defined(__x86_64__) || defined(__aarch64__))
    cr_skip_test("the stall detector runs on Linux x86-64 and AArch64");
#endif
    eddy_loop_options opts = EDDY_LOOP_OPTIONS_INIT(.stall_ns = 50 * NS_PER_MS);
    eddy_loop *loop = NULL;
    cr_assert(eq(int, eddy_loop_new(&loop, &opts), 0));
    FILE *file = tmpfile();
    cr_assert(ne(ptr, file, NULL));
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    cr_assert(ge(int, dup2(fileno(file), STDERR_FILENO), 0));
    spin_until = wall_now() + 400 * NS_PER_MS;
    int err = run_task(loop, busy_spin_for_the_detector, file, NULL);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    fclose(file);
    eddy_loop_free(loop);
    cr_assert(eq(int, err, 0));
    cr_assert(ne(ptr, stall_report, NULL));
    fputs(stall_report, stderr);
    cr_assert(ne(ptr, strstr(stall_report, "without awaiting; it is at:"), NULL), "stderr: %s",
              stall_report);
    cr_assert(ne(ptr, strstr(stall_report, "(busy_spin_for_the_detector)"), NULL), "stderr: %s",
              stall_report);
    cr_assert(ne(ptr, strstr(stall_report, " busy_spin_for_the_detector+"), NULL),
              "the backtrace names the function: %s", stall_report);
    free(stall_report);
}

Test(introspect, stall_option_is_checked, .timeout = TEST_TIMEOUT)
{
    eddy_loop_options opts = EDDY_LOOP_OPTIONS_INIT(.stall_ns = -1);
    eddy_loop *loop = NULL;
    cr_assert(eq(int, eddy_loop_new(&loop, &opts), -EINVAL));
    /* a quick task raises nothing, and the watchdog goes with the loop */
    opts.stall_ns = NS_PER_SEC;
    cr_assert(eq(int, eddy_loop_new(&loop, &opts), 0));
    cr_assert(eq(int, run_task(loop, named_by_its_function, NULL, NULL), 0));
    eddy_loop_free(loop);
}

/* ---- what a task waits on: the object, and who holds a lock ----------------- */

static eddy_lock *shared_lock;
static eddy_queue *shared_queue;
static eddy_event *shared_event;

static intptr_t lock_holder(void *arg)
{
    (void)arg;
    cr_assert(eq(int, eddy_lock_acquire(shared_lock), 0));
    intptr_t r = eddy_sleep(3600 * NS_PER_SEC);
    (void)eddy_lock_release(shared_lock);
    return r;
}

static intptr_t lock_waiter(void *arg)
{
    (void)arg;
    intptr_t r = eddy_lock_acquire(shared_lock);
    if (r == 0) (void)eddy_lock_release(shared_lock);
    return r;
}

static intptr_t queue_getter(void *arg)
{
    (void)arg;
    intptr_t item;
    return eddy_queue_get(shared_queue, &item);
}

static intptr_t event_waiter(void *arg)
{
    (void)arg;
    return eddy_event_wait(shared_event);
}

static intptr_t sync_dump_main(void *arg)
{
    (void)arg;
    cr_assert(eq(int, eddy_lock_new(&shared_lock), 0));
    cr_assert(eq(int, eddy_queue_new(&shared_queue, NULL), 0));
    cr_assert(eq(int, eddy_event_new(&shared_event), 0));
    const struct {
        eddy_task_fn fn;
        const char *name;
    } spawned[] = {{lock_holder, "holder"},
                   {lock_waiter, "waiter-1"},
                   {lock_waiter, "waiter-2"},
                   {queue_getter, "getter"},
                   {event_waiter, "event-waiter"}};
    eddy_task *tasks[5];
    for (size_t i = 0; i < 5; i++) {
        tasks[i] = eddy_spawn(NULL, spawned[i].fn, NULL);
        cr_assert(ne(ptr, tasks[i], NULL));
        (void)eddy_task_set_name(tasks[i], spawned[i].name);
        cr_assert(eq(int, eddy_yield(), 0)); /* the holder first */
    }
    size_t len;
    FILE *out = open_memstream(&dumped, &len);
    cr_assert(ne(ptr, out, NULL));
    cr_assert(eq(int, eddy_loop_dump(eddy_loop_current(), out), 0));
    fclose(out);
    for (size_t i = 0; i < 5; i++) {
        eddy_task_cancel(tasks[i]);
        (void)eddy_task_join(tasks[i], NULL);
    }
    eddy_lock_free(shared_lock);
    eddy_queue_free(shared_queue);
    eddy_event_free(shared_event);
    return 0;
}

Test(introspect, dump_names_the_object_a_task_waits_on, .timeout = TEST_TIMEOUT)
{
    eddy_loop *loop = new_loop();
    cr_assert(eq(int, run_task(loop, sync_dump_main, NULL, NULL), 0));
    eddy_loop_free(loop);
    if (getenv("EDDY_TEST_SHOW_DUMP")) fputs(dumped, stderr);
    char lock_line[128], queue_line[64], event_line[64];
    /* the holder's id, from its own line */
    char *holder = strstr(dumped, "\"holder\": ");
    cr_assert(ne(ptr, holder, NULL), "%s", dumped);
    while (holder > dumped && holder[-1] != '\n')
        holder--;
    unsigned long long holder_id;
    cr_assert(eq(int, sscanf(holder, "task %llu", &holder_id), 1));
    snprintf(lock_line, sizeof lock_line, "waiting on lock %p, held by task %llu (holder)\n",
             (void *)shared_lock, holder_id);
    snprintf(queue_line, sizeof queue_line, "waiting to get from queue %p\n", (void *)shared_queue);
    snprintf(event_line, sizeof event_line, "waiting on event %p\n", (void *)shared_event);
    char *b = task_block("waiter-1");
    expect(b, lock_line);
    free(b);
    b = task_block("waiter-2");
    expect(b, lock_line);
    free(b);
    b = task_block("getter");
    expect(b, queue_line);
    free(b);
    b = task_block("event-waiter");
    expect(b, event_line);
    free(b);
    free(dumped);
}
