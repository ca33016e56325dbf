/* SPDX-License-Identifier: MIT */
/* What a layer over a stream (lib/tls.c) sees of it: the transport table
 * between the stream's buffers and its socket (docs/streams.md, "Under the
 * hood"), and the hooks lib/stream.c gives a layer to put itself there. */
#ifndef EDDY_STREAM_LAYER_H
#define EDDY_STREAM_LAYER_H

#include "internal.h"

/* A transport's send_start: no count yet (not EDDY_OP_PENDING, which is 1, a
 * count too: one byte sent at once was taken for pending and sent again). */
#define SEND_PENDING INT64_MIN

/* What a stream reads from and writes to. The plain transport is the socket
 * itself; a TLS transport encrypts in send_start and decrypts in recv, and
 * reports plaintext progress. */
struct stream_transport {
    /* Task-only: up to len bytes into buf; the count, 0 at EOF, or an error. */
    ssize_t (*recv)(eddy_stream *st, void *buf, size_t len);
    /* Starts sending len (> 0) bytes without waiting: the count sent at once
     * (>= 0), SEND_PENDING when the stream's send op will report it later,
     * or an error. */
    int64_t (*send_start)(eddy_stream *st, const void *buf, size_t len);
    /* Asks a pending send to end soon (its completion still follows). */
    void (*send_cancel)(eddy_stream *st);
    /* Task-only: no more bytes will be written (the peer reads EOF). */
    int (*shutdown_write)(eddy_stream *st);
    /* Closes the socket (in a task or not; no recv or send in progress). */
    int (*close)(eddy_stream *st);
    /* Optional: what a completed send of the stream's op (result: the bytes
     * the socket took, or an error) means in the bytes send_start was given
     * (a layer's ciphertext into its plaintext; 0 = none yet, send again). */
    int64_t (*sent)(eddy_stream *st, int64_t result);
};

/* The socket transport, for a layer to send and receive through. */
extern const struct stream_transport eddy__stream_plain;

/* The stream's socket and the layer's own data (NULL without a layer). */
eddy_sock *eddy__stream_sock(const eddy_stream *st);
void *eddy__stream_layer(const eddy_stream *st);

/* Task-only: quiets the stream for a layer to start: sends what is unsent,
 * waits for it, and holds the read side as a reader does. The bytes received
 * and not read yet are in *data, *len: the layer's input now. 0, or an error
 * (the stream is as it was). */
int eddy__stream_layer_begin(eddy_stream *st, const void **data, size_t *len);
/* Ends what layer_begin began: the buffered bytes are dropped (the layer took
 * them); with err 0 the transport t (with its data) takes over, else err
 * becomes the stream's sticky read and write error. The result: err, or
 * -EBADF when the stream was closed meanwhile (the layer's data is then the
 * caller's to free; the stream closes its socket). */
int eddy__stream_layer_end(eddy_stream *st, const struct stream_transport *t, void *layer, int err);

#endif /* EDDY_STREAM_LAYER_H */
