/* SPDX-License-Identifier: MIT */
/* libFuzzer target: eddy_addr_parse. The input's first two bytes are the
 * port, the rest the host string (cut at its first NUL). Checks: no crash or
 * out-of-bounds read (ASan, UBSan); a result of 0 or -EINVAL only; on
 * success an AF_INET or AF_INET6 address with the port given, which
 * inet_ntop prints and eddy_addr_parse reads back to the same bytes; and
 * the answer agrees with inet_pton's (brackets around IPv6 allowed). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "eddy.h"

static int reference(const char *host)
{
    unsigned char a[16];
    char buf[INET6_ADDRSTRLEN];
    if (inet_pton(AF_INET, host, a) == 1) return AF_INET;
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(buf)) {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = 0;
        host = buf;
    }
    return inet_pton(AF_INET6, host, a) == 1 ? AF_INET6 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    uint16_t port = (uint16_t)(data[0] << 8 | data[1]);
    char *host = malloc(size - 1); /* exactly the string and its NUL */
    if (!host) return 0;
    memcpy(host, data + 2, size - 2);
    host[size - 2] = 0;

    struct sockaddr_storage ss;
    int err = eddy_addr_parse(&ss, host, port);
    int family = reference(host);
    if (err != 0 && err != -EINVAL) abort();
    if ((err == 0) != (family != 0)) abort();
    if (err == 0) {
        if (ss.ss_family != family) abort();
        char text[INET6_ADDRSTRLEN];
        struct sockaddr_storage again;
        if (family == AF_INET) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
            if (ntohs(sin->sin_port) != port) abort();
            if (!inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text))) abort();
        } else {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
            if (ntohs(sin6->sin6_port) != port) abort();
            if (!inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text))) abort();
        }
        if (eddy_addr_parse(&again, text, port) != 0) abort();
        if (memcmp(&again, &ss, sizeof(ss)) != 0) abort();
    }
    if (eddy_addr_parse(NULL, host, port) != -EINVAL) abort();
    free(host);
    return 0;
}
