/* SPDX-License-Identifier: MIT */
/* The capability API (docs/design.md, "Backends and the capability table") over the table in
 * caps_table.h. For a backend compiled in and able to run here, the answer is
 * its running instance's: each such backend is initialised once per process,
 * asked through its supports() hook, and freed at once. For the others (not
 * built for this platform, or refused here), the table's static value.
 *
 * A loop keeps its backend's answers in loop->caps, filled at creation, so the
 * check every op makes (lib/op.c) is one load. EDDY_CAPS_DISABLE, a list of
 * capability names, makes a new loop report those EDDY_NONE: a program (or a
 * test) sees what it would do on a backend without them. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "caps_table.h"

static const char *const cap_names[EDDY_CAP_COUNT] = {
    [EDDY_CAP_TCP] = "tcp",
    [EDDY_CAP_UDP] = "udp",
    [EDDY_CAP_UNIX_SOCKETS] = "unix_sockets",
    [EDDY_CAP_FILE_IO] = "file_io",
    [EDDY_CAP_TIMERS] = "timers",
    [EDDY_CAP_CANCEL] = "cancel",
    [EDDY_CAP_WAKEUP] = "wakeup",
    [EDDY_CAP_WATCH_FD] = "watch_fd",
    [EDDY_CAP_SIGNALS] = "signals",
    [EDDY_CAP_SUBPROCESS] = "subprocess",
    [EDDY_CAP_DNS] = "dns",
    [EDDY_CAP_MULTISHOT_ACCEPT] = "multishot_accept",
    [EDDY_CAP_MULTISHOT_RECV] = "multishot_recv",
    [EDDY_CAP_BUFFER_RING] = "buffer_ring",
    [EDDY_CAP_ZEROCOPY_SEND] = "zerocopy_send",
    [EDDY_CAP_SENDFILE] = "sendfile",
    [EDDY_CAP_TLS] = "tls",
    [EDDY_CAP_MSG_RING] = "msg_ring",
    [EDDY_CAP_DIRECT_DESCRIPTORS] = "direct_descriptors",
    [EDDY_CAP_REGISTERED_FILES] = "registered_files",
    [EDDY_CAP_RECV_BUNDLE] = "recv_bundle",
    [EDDY_CAP_BUFFER_RING_INCREMENTAL] = "buffer_ring_incremental",
    [EDDY_CAP_REGISTERED_BUFFERS] = "registered_buffers",
};

/* What a backend offers, with the capabilities no backend decides: TLS is
 * the library's (lib/tls.c), there on every backend when built with OpenSSL. */
static eddy_support backend_supports(const struct eddy_backend *b, eddy_cap cap)
{
    if (cap == EDDY_CAP_TLS) return EDDY_HAVE_OPENSSL ? EDDY_NATIVE : EDDY_NONE;
    return b->ops->supports(b, cap);
}

/* What probing found, per table row. */
struct probe {
    int available; /* 0, the init error, or -ENOTSUP when not compiled in */
    uint8_t support[EDDY_CAP_COUNT];
};

static struct probe probes[EDDY__CAPS_ROW_COUNT];
static eddy__once probe_once = EDDY__ONCE_INIT;

static bool cap_valid(eddy_cap cap)
{
    return (unsigned)cap < EDDY_CAP_COUNT;
}

/* The table row of a backend name, or -1. */
static int row_index(const char *name)
{
    for (size_t i = 0; i < EDDY__CAPS_ROW_COUNT; i++)
        if (strcmp(name, eddy__caps_rows[i].name) == 0) return (int)i;
    return -1;
}

static const struct eddy_backend_ops *compiled_backend(const char *name)
{
    for (size_t i = 0; eddy__backends[i]; i++)
        if (strcmp(name, eddy__backends[i]->name) == 0) return eddy__backends[i];
    return NULL;
}

/* Initialises each compiled-in backend once with default options, as a
 * default loop would, and keeps its answers. */
static void probe_all(void)
{
    for (size_t i = 0; i < EDDY__CAPS_ROW_COUNT; i++) {
        struct probe *p = &probes[i];
        const struct eddy_backend_ops *ops = compiled_backend(eddy__caps_rows[i].name);
        if (!ops) {
            p->available = -ENOTSUP;
            continue;
        }
        struct eddy_backend b = {.ops = ops};
        p->available = ops->init(&b, NULL);
        if (p->available < 0) continue;
        for (unsigned cap = 0; cap < EDDY_CAP_COUNT; cap++)
            p->support[cap] = (uint8_t)backend_supports(&b, (eddy_cap)cap);
        ops->free(&b);
    }
}

static const struct probe *probe_of(int row)
{
    eddy__once_run(&probe_once, probe_all);
    return &probes[row];
}

EDDY_API const char *eddy_cap_name(eddy_cap cap)
{
    return cap_valid(cap) ? cap_names[cap] : NULL;
}

EDDY_API eddy_support eddy_loop_supports(const eddy_loop *loop, eddy_cap cap)
{
    if (!loop || !cap_valid(cap)) return EDDY_NONE;
    return (eddy_support)loop->caps[cap];
}

EDDY_API eddy_support eddy_backend_supports(const char *backend, eddy_cap cap)
{
    if (!backend || !cap_valid(cap)) return EDDY_NONE;
    int row = row_index(backend);
    if (row < 0) return EDDY_NONE;
    const struct probe *p = probe_of(row);
    if (p->available == 0) return (eddy_support)p->support[cap];
    return eddy__caps_rows[row].cells[cap].support;
}

EDDY_API int eddy_backend_available(const char *backend)
{
    if (!backend) return -EINVAL;
    int row = row_index(backend);
    if (row < 0) return -ENOENT;
    return probe_of(row)->available;
}

EDDY_API size_t eddy_backends(const char **names, size_t max)
{
    size_t count = 0;
    for (; eddy__backends[count]; count++)
        if (names && count < max) names[count] = eddy__backends[count]->name;
    return count;
}

/* Sets to EDDY_NONE each capability list names (separated by commas or
 * spaces); names it does not know are reported in debug mode and ignored. */
static void disable_listed(struct eddy_loop *loop, const char *list)
{
    const char *separators = ", ";
    for (const char *p = list + strspn(list, separators); *p; p += strspn(p, separators)) {
        size_t len = strcspn(p, separators);
        bool known = false;
        for (unsigned cap = 0; cap < EDDY_CAP_COUNT; cap++) {
            if (strlen(cap_names[cap]) == len && strncmp(p, cap_names[cap], len) == 0) {
                loop->caps[cap] = EDDY_NONE;
                known = true;
            }
        }
        if (!known && (loop->flags & EDDY_LOOP_DEBUG))
            eddy__debug_report(loop, "EDDY_CAPS_DISABLE: no capability named \"%.*s\"", (int)len,
                               p);
        p += len;
    }
}

void eddy__loop_caps_init(struct eddy_loop *loop)
{
    const struct eddy_backend *b = &loop->backend;
    for (unsigned cap = 0; cap < EDDY_CAP_COUNT; cap++)
        loop->caps[cap] = (uint8_t)backend_supports(b, (eddy_cap)cap);
    const char *disabled = getenv("EDDY_CAPS_DISABLE");
    if (disabled) disable_listed(loop, disabled);
}
