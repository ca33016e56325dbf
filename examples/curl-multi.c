/* SPDX-License-Identifier: MIT */
/* curl-multi: downloads URLs concurrently with libcurl's multi-socket API,
 * driven by eddy's loop: libcurl says which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION) and when to call it back (CURLMOPT_TIMERFUNCTION);
 * eddy_watch_* reports readiness and eddy_call_later keeps the one timer.
 * libcurl does its own reads and writes: the descriptors stay libcurl's.
 *
 *   curl-multi DIR URL...
 *
 * Each URL is saved as DIR/<its last path component>. Exits 0 when every
 * transfer succeeded with a 2xx status, else 1 (each failure is printed). */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eddy.h"

struct transfer {
    CURL *easy;
    FILE *out;
    char *url;
    char path[4096];
};

struct downloader {
    eddy_loop *loop;
    CURLM *multi;
    eddy_timer *timer; /* owned handle, or NULL */
    int running;       /* transfers libcurl still runs */
    int failures;
};

/* One socket libcurl asked us to watch (curl_multi_assign keeps it). */
struct sock_watch {
    eddy_watch *w;
    curl_socket_t fd;
    struct downloader *d;
};

/* Reports what finished: a transfer's result, then its cleanup. */
static void check_done(struct downloader *d)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(d->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        struct transfer *t;
        long code = 0;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
        if (msg->data.result != CURLE_OK || code < 200 || code > 299) {
            fprintf(stderr, "curl-multi: %s: %s (HTTP %ld)\n", t->url,
                    curl_easy_strerror(msg->data.result), code);
            d->failures++;
        } else {
            printf("%s -> %s\n", t->url, t->path);
        }
        curl_multi_remove_handle(d->multi, t->easy);
        curl_easy_cleanup(t->easy);
        if (fclose(t->out) != 0) d->failures++;
        free(t);
    }
}

/* ---- sockets: libcurl's wishes -> eddy_watch ------------------------------- */

static void on_ready(eddy_watch *w, unsigned revents, void *arg)
{
    struct sock_watch *sw = arg;
    struct downloader *d = sw->d;
    int mask = ((revents & EDDY_READABLE) ? CURL_CSELECT_IN : 0) |
               ((revents & EDDY_WRITABLE) ? CURL_CSELECT_OUT : 0);
    (void)w;
    /* sw may be freed inside (CURL_POLL_REMOVE): not touched after. */
    curl_multi_socket_action(d->multi, sw->fd, mask, &d->running);
    check_done(d);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct downloader *d = userp;
    struct sock_watch *sw = socketp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (sw) {
            (void)eddy_watch_stop(sw->w);
            curl_multi_assign(d->multi, fd, NULL);
            free(sw);
        }
        return 0;
    }
    unsigned events = (what == CURL_POLL_IN || what == CURL_POLL_INOUT ? EDDY_READABLE : 0) |
                      (what == CURL_POLL_OUT || what == CURL_POLL_INOUT ? EDDY_WRITABLE : 0);
    if (sw) return eddy_watch_update(sw->w, events) < 0 ? -1 : 0;
    sw = calloc(1, sizeof *sw);
    if (!sw) return -1;
    sw->fd = fd;
    sw->d = d;
    int err = eddy_watch_start(&sw->w, d->loop, fd, events, on_ready, sw);
    if (err < 0) {
        fprintf(stderr, "curl-multi: watching fd %d: %s\n", (int)fd, eddy_strerror(err));
        free(sw);
        return -1;
    }
    curl_multi_assign(d->multi, fd, sw);
    return 0;
}

/* ---- the timer: libcurl's one deadline -> eddy_call_later ------------------ */

static void on_timeout(void *arg)
{
    struct downloader *d = arg;
    curl_multi_socket_action(d->multi, CURL_SOCKET_TIMEOUT, 0, &d->running);
    check_done(d);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct downloader *d = userp;
    (void)multi;
    if (d->timer) { /* a new deadline replaces the old one */
        (void)eddy_timer_cancel(d->timer);
        d->timer = NULL;
    }
    if (timeout_ms < 0) return 0; /* no deadline */
    /* Even 0 goes through the loop: libcurl must not be called from inside
     * its own callback. */
    return eddy_call_later(d->loop, (int64_t)timeout_ms * 1000000, on_timeout, d, &d->timer) < 0
               ? -1
               : 0;
}

static size_t write_cb(char *data, size_t size, size_t n, void *userp)
{
    struct transfer *t = userp;
    return fwrite(data, size, n, t->out) * size; /* a short count fails the transfer */
}

static int add_transfer(struct downloader *d, const char *dir, char *url)
{
    struct transfer *t = calloc(1, sizeof *t);
    if (!t) return -ENOMEM;
    const char *name = strrchr(url, '/');
    name = name && name[1] ? name + 1 : "index.html";
    snprintf(t->path, sizeof t->path, "%s/%s", dir, name);
    t->url = url;
    t->out = fopen(t->path, "wb");
    t->easy = curl_easy_init();
    if (!t->out || !t->easy) {
        fprintf(stderr, "curl-multi: %s: %s\n", t->path, strerror(errno));
        if (t->out) fclose(t->out);
        if (t->easy) curl_easy_cleanup(t->easy);
        free(t);
        return -EIO;
    }
    curl_easy_setopt(t->easy, CURLOPT_URL, url);
    curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
    curl_easy_setopt(t->easy, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
    curl_multi_add_handle(d->multi, t->easy); /* calls timer_cb: the start */
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: curl-multi DIR URL...\n");
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return 1;
    struct downloader d = {0};
    int err = eddy_loop_new(&d.loop, NULL);
    if (err < 0) {
        fprintf(stderr, "curl-multi: %s\n", eddy_strerror(err));
        return 1;
    }
    d.multi = curl_multi_init();
    curl_multi_setopt(d.multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(d.multi, CURLMOPT_SOCKETDATA, &d);
    curl_multi_setopt(d.multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(d.multi, CURLMOPT_TIMERDATA, &d);
    for (int i = 2; i < argc; i++)
        if (add_transfer(&d, argv[1], argv[i]) < 0) d.failures++;
    /* Runs while libcurl watches a socket or waits for its deadline. */
    err = eddy_loop_run(d.loop);
    if (err < 0) {
        fprintf(stderr, "curl-multi: %s\n", eddy_strerror(err));
        d.failures++;
    }
    check_done(&d);
    if (d.timer) (void)eddy_timer_cancel(d.timer);
    curl_multi_cleanup(d.multi); /* may still say CURL_POLL_REMOVE: the loop is there */
    eddy_loop_free(d.loop);
    curl_global_cleanup();
    return d.failures ? 1 : 0;
}
