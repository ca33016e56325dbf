/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the request parser of examples/http-hello.c (included
 * without its main, as tests/test_http.c does). The input's first byte
 * picks how the rest is split into pieces, as a client's writes would
 * arrive; the rest is the bytes on the connection. Checks: no crash or read
 * past the bytes received so far (each piece is scanned in a buffer of
 * exactly its length, so ASan sees an overread); the head's end found piece
 * by piece is the one found in one go; a complete head gets 0, 400, 501 or
 * 505, and a 0 carries a sane request; every response fits its buffer. */
#define HTTP_HELLO_NO_MAIN
#include "../examples/http-hello.c"

/* http_head_end over the first n bytes, in a buffer of exactly n bytes. */
static size_t head_end_exact(const uint8_t *data, size_t n, size_t *scan)
{
    char *copy = malloc(n ? n : 1);
    if (!copy) abort();
    memcpy(copy, data, n);
    size_t end = http_head_end(copy, n, scan);
    free(copy);
    return end;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned seed = data[0];
    data++;
    size--;

    size_t scan = 0;
    size_t whole = head_end_exact(data, size, &scan);
    if (whole > size) abort();

    /* piece by piece: lengths 1..16 from the seed, as recv would return them */
    size_t pieces_scan = 0, pieces = 0, n = 0;
    while (n < size && pieces == 0) {
        seed = seed * 1103515245u + 12345u;
        n += 1 + (seed >> 16) % 16;
        if (n > size) n = size;
        pieces = head_end_exact(data, n, &pieces_scan);
        if (pieces_scan > n) abort();
    }
    if (pieces != whole) abort();

    http_refresh();
    char out[HTTP_RESPONSE_MAX];
    if (whole) {
        char *head = malloc(whole);
        if (!head) abort();
        memcpy(head, data, whole);
        struct http_req req;
        int status = http_parse_head(head, whole, &req);
        free(head);
        if (status != 0 && status != 400 && status != 501 && status != 505) abort();
        if (status == 0 && (req.minor < 0 || req.minor > 9)) abort();
        size_t len = http_response(out, status ? status : 200, status ? false : req.keep_alive);
        if (len == 0 || len >= sizeof(out)) abort();
    }
    if (http_response(out, 431, false) >= sizeof(out)) abort();
    return 0;
}
