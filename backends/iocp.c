/* SPDX-License-Identifier: MIT */
/* The IOCP backend (Windows): a completion backend, as io_uring is
 * (docs/design.md, "Layers").
 *
 * Every socket and file an op runs on is associated with the loop's
 * completion port the first time, and each op is started as overlapped I/O:
 * AcceptEx and ConnectEx (found through WSAIoctl), WSARecv, WSASend,
 * WSARecvFrom and WSASendTo on sockets; ReadFile and WriteFile at an offset on
 * files opened with FILE_FLAG_OVERLAPPED (win32/fs.c). poll() waits in
 * GetQueuedCompletionStatusEx, as long as the loop's next timer allows, and
 * finishes the ops whose packets it dequeued. wake() posts a packet with a
 * key of its own (PostQueuedCompletionStatus).
 *
 * An op's OVERLAPPED and the scratch its call needs (the accepted socket and
 * its address buffer, the WSABUFs, the flags and the sender's length of a
 * receive) cannot live in struct eddy_op, so each op in flight borrows a
 * request from the backend's free list (grown on demand, never shrunk; no
 * allocation once warm). The request points back at its op; op->backend_data
 * points at the request, for cancel().
 *
 * Cancellation: CancelIoEx on the op's OVERLAPPED. The op still completes
 * through the port, with ERROR_OPERATION_ABORTED (-ECANCELED), or with its
 * result if it won the race: the task waits for that packet before its frame
 * goes (the op lifetime rule).
 *
 * FILE_SKIP_COMPLETION_PORT_ON_SUCCESS is set on files, and on sockets whose
 * provider hands out real kernel handles (XP1_IFS_HANDLES: the base TCP/IP
 * provider, not a layered one that would still queue a packet); an op that
 * succeeds at once is then finished inside submit() without a packet.
 *
 * Opening, syncing, stat and path ops have no overlapped form; handles()
 * sends them to the thread pool, as epoll does all file ops.
 *
 * Two ops go beyond plain overlapped I/O. EDDY_OP_SPLICE (eddy_stream_sendfile)
 * is TransmitFile from a file to a socket. EDDY_OP_POLL (fd watching) is
 * IOCTL_AFD_POLL, sent with NtDeviceIoControlFile to an AFD endpoint of the
 * backend's own that is associated with the port, naming the watched
 * socket's base handle: readiness of sockets only, the one kind of handle
 * Windows has readiness for. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "../win32/win32.h"
#include "backend.h"

#define DEFAULT_ENTRIES 256
#define WAKE_KEY        ((ULONG_PTR)1) /* ops complete with key 0 */
#define MAX_IOV         16
#define MAX_IO_BYTES    0x7fffffffu /* WSABUF and ReadFile lengths are 32-bit */
#define ADDR_SLOT       (sizeof(struct sockaddr_storage) + 16) /* AcceptEx's rule */

/* IOCTL_AFD_POLL: the readiness query of the Winsock kernel driver (AFD),
 * which WSAPoll and select are built on. Its input and output buffer, for
 * one socket: a deadline (absolute, in 100 ns units), how many sockets, and
 * per socket its base handle, the events wanted (then those seen) and a
 * status. */
#define IOCTL_AFD_POLL 0x00012024
enum {
    AFD_POLL_RECEIVE = 0x001,
    AFD_POLL_RECEIVE_EXPEDITED = 0x002,
    AFD_POLL_SEND = 0x004,
    AFD_POLL_DISCONNECT = 0x008,
    AFD_POLL_ABORT = 0x010,
    AFD_POLL_LOCAL_CLOSE = 0x020,
    AFD_POLL_ACCEPT = 0x080,
    AFD_POLL_CONNECT_FAIL = 0x100,
};
struct afd_poll_info {
    LONGLONG deadline;
    ULONG count;
    ULONG exclusive; /* a BOOLEAN and padding */
    HANDLE socket;
    ULONG events;
    LONG status;
};
/* ntdll's NtDeviceIoControlFile and RtlNtStatusToDosError, found at init. */
typedef LONG(WINAPI *nt_ioctl_fn)(HANDLE file, HANDLE event, void *apc, void *apc_context,
                                  void *status_block, ULONG code, void *in, ULONG in_len, void *out,
                                  ULONG out_len);
typedef ULONG(WINAPI *nt_status_fn)(LONG status);
#define NT_STATUS_PENDING 0x00000103L

/* One op in flight: its OVERLAPPED and what its call needs kept alive. */
struct request {
    OVERLAPPED ov; /* first: the port gives us this pointer back */
    struct eddy_op *op;
    struct request *next_free;
    SOCKET accepted; /* ACCEPT: the socket AcceptEx fills */
    DWORD flags;     /* WSARecv's in/out flags */
    INT addrlen;     /* WSARecvFrom's sender length */
    WSABUF bufs[MAX_IOV];
    char addresses[2 * ADDR_SLOT]; /* ACCEPT: local, then remote address */
    struct afd_poll_info poll;     /* POLL: the query, then its answer */
};

/* What the backend remembers about a handle it associated with its port:
 * whether a success skips the port, and a listener's address family (in
 * the bits from FAMILY_SHIFT up), which each accept's new socket needs. */
enum { HANDLE_SKIPS_ON_SUCCESS = 1, FAMILY_SHIFT = 8 };

struct handle_slot {
    uintptr_t handle; /* 0: empty; TOMBSTONE: removed */
    unsigned flags;
};
#define TOMBSTONE ((uintptr_t)-1)

struct iocp_state {
    HANDLE port;
    volatile LONG wake_pending; /* a wake packet is queued and not yet dequeued */
    struct request *free_requests;
    struct request **blocks; /* every request allocated, for free() */
    size_t block_count;
    struct handle_slot *handles; /* open addressing, power-of-two capacity */
    size_t handle_capacity, handle_used;
    LPFN_ACCEPTEX accept_ex;
    LPFN_CONNECTEX connect_ex;
    LPFN_GETACCEPTEXSOCKADDRS accept_addresses;
    LPFN_TRANSMITFILE transmit_file; /* NULL: EDDY_OP_SPLICE goes to lib/'s copy loop */
    nt_ioctl_fn nt_ioctl;            /* NULL: no fd watching */
    nt_status_fn nt_status;
    SOCKET poll_socket; /* the AFD endpoint POLL queries go through; made on first use */
    ULONG max_entries;
    OVERLAPPED_ENTRY entries[];
};

static bool is_socket_kind(unsigned kind)
{
    return kind >= EDDY_OP_ACCEPT && kind <= EDDY_OP_CLOSE;
}

static int64_t wsa_error(void)
{
    return eddy__win_error((unsigned long)WSAGetLastError());
}

/* ---- handles associated with the port ---------------------------------------- */

static size_t handle_hash(uintptr_t h, size_t capacity)
{
    uint64_t x = (uint64_t)h * 0x9e3779b97f4a7c15u;
    return (size_t)(x >> 32) & (capacity - 1);
}

static struct handle_slot *handle_find(struct iocp_state *st, uintptr_t h)
{
    if (!st->handle_capacity) return NULL;
    for (size_t i = handle_hash(h, st->handle_capacity);; i = (i + 1) & (st->handle_capacity - 1)) {
        struct handle_slot *slot = &st->handles[i];
        if (slot->handle == h) return slot;
        if (slot->handle == 0) return NULL;
    }
}

static int handle_insert(struct iocp_state *st, uintptr_t h, unsigned flags)
{
    if ((st->handle_used + 1) * 2 > st->handle_capacity) {
        size_t capacity = st->handle_capacity ? st->handle_capacity * 2 : 64;
        struct handle_slot *old = st->handles;
        size_t old_capacity = st->handle_capacity;
        st->handles = calloc(capacity, sizeof(*st->handles));
        if (!st->handles) {
            st->handles = old;
            return -ENOMEM;
        }
        st->handle_capacity = capacity;
        st->handle_used = 0;
        for (size_t i = 0; i < old_capacity; i++)
            if (old[i].handle != 0 && old[i].handle != TOMBSTONE)
                (void)handle_insert(st, old[i].handle, old[i].flags);
        free(old);
    }
    size_t i = handle_hash(h, st->handle_capacity);
    while (st->handles[i].handle != 0 && st->handles[i].handle != TOMBSTONE)
        i = (i + 1) & (st->handle_capacity - 1);
    if (st->handles[i].handle == 0) st->handle_used++;
    st->handles[i].handle = h;
    st->handles[i].flags = flags;
    return 0;
}

/* Whether a socket's provider is the base one, whose handles are kernel
 * handles: only then may a success skip the port. */
static bool socket_is_ifs(SOCKET s)
{
    WSAPROTOCOL_INFOW info;
    int len = sizeof info;
    if (getsockopt(s, SOL_SOCKET, SO_PROTOCOL_INFOW, (char *)&info, &len) != 0) return false;
    return (info.dwServiceFlags1 & XP1_IFS_HANDLES) != 0;
}

/* Associates op's handle with the port, once. Returns its flags, or a
 * negative code. A handle that refuses with ERROR_INVALID_PARAMETER is
 * associated already (closed and reused without our knowing, or handed to us
 * associated): its completions come wherever they were going. */
static unsigned listener_family(uintptr_t h)
{
    struct sockaddr_storage self;
    int len = sizeof self;
    if (getsockname((SOCKET)h, (struct sockaddr *)&self, &len) != 0) return 0;
    return (unsigned)self.ss_family << FAMILY_SHIFT;
}

static int handle_adopt(struct iocp_state *st, struct eddy_op *op)
{
    uintptr_t h = (uintptr_t)op->fd;
    struct handle_slot *slot = handle_find(st, h);
    if (slot) {
        if (op->kind == EDDY_OP_ACCEPT && !(slot->flags >> FAMILY_SHIFT))
            slot->flags |= listener_family(h);
        return (int)slot->flags;
    }
    unsigned flags = op->kind == EDDY_OP_ACCEPT ? listener_family(h) : 0;
    if (CreateIoCompletionPort((HANDLE)h, st->port, 0, 0)) {
        bool skip = is_socket_kind(op->kind) ? socket_is_ifs((SOCKET)h) : true;
        if (skip &&
            SetFileCompletionNotificationModes((HANDLE)h, FILE_SKIP_COMPLETION_PORT_ON_SUCCESS |
                                                              FILE_SKIP_SET_EVENT_ON_HANDLE))
            flags |= HANDLE_SKIPS_ON_SUCCESS;
    } else if (GetLastError() != ERROR_INVALID_PARAMETER) {
        return eddy__win_error(GetLastError());
    }
    int err = handle_insert(st, h, flags);
    return err < 0 ? err : (int)flags;
}

static void handle_forget(struct iocp_state *st, uintptr_t h)
{
    struct handle_slot *slot = handle_find(st, h);
    if (slot) slot->handle = TOMBSTONE;
}

/* ---- requests -------------------------------------------------------------------- */

static struct request *request_get(struct iocp_state *st, struct eddy_op *op)
{
    struct request *r = st->free_requests;
    if (r) {
        st->free_requests = r->next_free;
    } else {
        struct request **blocks = realloc(st->blocks, (st->block_count + 1) * sizeof(*blocks));
        if (!blocks) return NULL;
        st->blocks = blocks;
        if (!(r = malloc(sizeof(*r)))) return NULL;
        st->blocks[st->block_count++] = r;
    }
    memset(&r->ov, 0, sizeof r->ov);
    r->op = op;
    r->accepted = INVALID_SOCKET;
    r->flags = 0;
    return r;
}

static void request_put(struct iocp_state *st, struct request *r)
{
    r->next_free = st->free_requests;
    st->free_requests = r;
}

/* ---- finishing an op ------------------------------------------------------------- */

/* A POLL's answer: its direction's bit once the socket is ready that way or
 * has an error or hang-up to report (the owner's own call then says which),
 * -EBADF once it was closed under the query. */
static int64_t poll_outcome(struct request *r, int64_t result)
{
    if (result < 0) return result;
    if (r->poll.count && (r->poll.events & AFD_POLL_LOCAL_CLOSE)) return -EBADF;
    return r->op->u.io.flags;
}

/* What an op that ended with bytes transferred (>= 0) or an error returns,
 * after the work its kind needs once the I/O is done. */
static int64_t op_outcome(struct iocp_state *st, struct request *r, int64_t result)
{
    struct eddy_op *op = r->op;
    switch (op->kind) {
    case EDDY_OP_ACCEPT: {
        if (result == -ECONNRESET) result = -ECONNABORTED; /* the client gave up: take the next */
        SOCKET listener = (SOCKET)op->fd;
        if (result >= 0 && setsockopt(r->accepted, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT,
                                      (const char *)&listener, sizeof listener) != 0)
            result = wsa_error();
        if (result < 0) {
            closesocket(r->accepted);
            return result;
        }
        if (op->u.addr.addr && op->u.addr.addrlen) {
            struct sockaddr *local, *remote;
            int local_len, remote_len;
            st->accept_addresses(r->addresses, 0, ADDR_SLOT, ADDR_SLOT, &local, &local_len, &remote,
                                 &remote_len);
            socklen_t n = remote_len < *op->u.addr.addrlen ? remote_len : *op->u.addr.addrlen;
            memcpy(op->u.addr.addr, remote, (size_t)n);
            *op->u.addr.addrlen = remote_len;
        }
        return (int64_t)(intptr_t)r->accepted;
    }
    case EDDY_OP_CONNECT:
        if (result >= 0) {
            if (setsockopt((SOCKET)op->fd, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0) != 0)
                return wsa_error();
            return 0;
        }
        return result;
    case EDDY_OP_RECVMSG:
        if (result == -EMSGSIZE) { /* truncated, as POSIX does: the buffers are full */
            result = 0;
            for (size_t i = 0; i < op->u.msg.msg->msg_iovlen; i++)
                result += r->bufs[i].len;
        }
        if (result >= 0) op->u.msg.msg->msg_namelen = r->addrlen;
        return result;
    case EDDY_OP_SEND:
    case EDDY_OP_SENDMSG:
    case EDDY_OP_SPLICE: /* TransmitFile: a send too */
        /* Winsock answers every send after a reset with WSAECONNRESET (or
         * WSAECONNABORTED); POSIX gives EPIPE, which eddy promises for a write
         * to a closed peer. */
        return result == -ECONNRESET || result == -ECONNABORTED ? -EPIPE : result;
    case EDDY_OP_READ:
        if (result == -EPIPE) return 0; /* ERROR_BROKEN_PIPE: the writer is gone: EOF */
        /* fallthrough */
    case EDDY_OP_WRITE:
        /* A handle not opened for this direction: POSIX says EBADF. */
        return result == -EACCES ? -EBADF : result;
    case EDDY_OP_POLL:
        return poll_outcome(r, result);
    default:
        return result;
    }
}

/* The failure status (an NTSTATUS) of a dequeued op, for the codes sockets
 * and files meet most: read straight from the OVERLAPPED, as Winsock's own
 * translation is not complete everywhere (Wine turns a failed accept's
 * STATUS_TOO_MANY_OPENED_FILES into WSAEINVAL). 1: not one of these. */
static int64_t status_error(uint32_t status)
{
    switch (status) {
    case 0xC0000120: /* STATUS_CANCELLED */
        return -ECANCELED;
    case 0xC0000011: /* STATUS_END_OF_FILE */
        return 0;
    case 0xC000011F: /* STATUS_TOO_MANY_OPENED_FILES */
        return -EMFILE;
    case 0xC0000017: /* STATUS_NO_MEMORY */
    case 0xC000009A: /* STATUS_INSUFFICIENT_RESOURCES */
        return -ENOMEM;
    case 0xC0000236: /* STATUS_CONNECTION_REFUSED */
        return -ECONNREFUSED;
    case 0xC000020D: /* STATUS_CONNECTION_RESET */
    case 0xC000013B: /* STATUS_LOCAL_DISCONNECT */
    case 0xC000013C: /* STATUS_REMOTE_DISCONNECT */
        return -ECONNRESET;
    case 0xC0000241: /* STATUS_CONNECTION_ABORTED */
        return -ECONNABORTED;
    case 0xC00000B5: /* STATUS_IO_TIMEOUT */
        return -ETIMEDOUT;
    case 0xC000023C: /* STATUS_NETWORK_UNREACHABLE */
        return -ENETUNREACH;
    case 0xC000023D: /* STATUS_HOST_UNREACHABLE */
        return -EHOSTUNREACH;
    case 0xC000014B: /* STATUS_PIPE_BROKEN */
        return -EPIPE;
    default:
        return 1;
    }
}

/* The error of a finished overlapped op, as a negative code. */
static int64_t overlapped_error(struct request *r)
{
    int64_t known = status_error((uint32_t)r->ov.Internal);
    if (known <= 0) return known;
    DWORD bytes, flags;
    if (is_socket_kind(r->op->kind)) {
        if (WSAGetOverlappedResult((SOCKET)r->op->fd, &r->ov, &bytes, FALSE, &flags)) return bytes;
        /* The socket was closed under the op (eddy waits for its calls
         * before closing, so only a close behind its back does this). */
        if (WSAGetLastError() == WSAENOTSOCK) return -ECANCELED;
        return wsa_error();
    }
    if (GetOverlappedResult((HANDLE)r->op->fd, &r->ov, &bytes, FALSE)) return bytes;
    DWORD code = GetLastError();
    return code == ERROR_HANDLE_EOF ? 0 : eddy__win_error(code);
}

static int finish_now(struct eddy_op *op, int64_t result)
{
    op->result = result;
    op->state = EDDY_OP_STATE_DONE;
    return EDDY_OP_DONE;
}

/* After an overlapped call: ok and bytes as it returned them, error its
 * GetLastError when it failed. The op is pending when a packet will come;
 * otherwise it is finished here. */
static int started(struct eddy_backend *b, struct request *r, int flags, bool ok, DWORD bytes,
                   DWORD error)
{
    struct iocp_state *st = b->impl;
    struct eddy_op *op = r->op;
    if (ok && !(flags & HANDLE_SKIPS_ON_SUCCESS)) ok = false, error = ERROR_IO_PENDING;
    if (!ok && error == ERROR_IO_PENDING) {
        op->backend_data = (uintptr_t)r;
        op->state = EDDY_OP_STATE_IN_FLIGHT;
        b->pending++;
        return EDDY_OP_PENDING;
    }
    int64_t result = ok ? (int64_t)bytes : error == ERROR_HANDLE_EOF ? 0 : eddy__win_error(error);
    result = op_outcome(st, r, result);
    request_put(st, r);
    return finish_now(op, result);
}

/* ---- starting ops ------------------------------------------------------------------ */

static DWORD io_length(size_t len)
{
    return len > MAX_IO_BYTES ? MAX_IO_BYTES : (DWORD)len;
}

static int start_accept(struct eddy_backend *b, struct request *r, int flags)
{
    struct iocp_state *st = b->impl;
    SOCKET listener = (SOCKET)r->op->fd;
    int family = flags >> FAMILY_SHIFT;
    if (!family) /* getsockname failed: not a bound socket */
        return started(b, r, flags, false, 0, WSAEINVAL);
    r->accepted = WSASocketW(family, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                             WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (r->accepted == INVALID_SOCKET) {
        int64_t err = wsa_error();
        request_put(st, r);
        return finish_now(r->op, err);
    }
    DWORD bytes = 0;
    BOOL ok =
        st->accept_ex(listener, r->accepted, r->addresses, 0, ADDR_SLOT, ADDR_SLOT, &bytes, &r->ov);
    return started(b, r, flags, ok, bytes, ok ? 0 : (DWORD)WSAGetLastError());
}

/* ConnectEx wants a bound socket: bind to the wildcard address of the
 * destination's family, unless bound already. */
static int start_connect(struct eddy_backend *b, struct request *r, int flags)
{
    struct iocp_state *st = b->impl;
    struct eddy_op *op = r->op;
    SOCKET s = (SOCKET)op->fd;
    const struct sockaddr *to = op->u.addr.addr;
    if (!to) return started(b, r, flags, false, 0, WSAEFAULT);
    struct sockaddr_storage any;
    memset(&any, 0, sizeof any);
    any.ss_family = to->sa_family;
    int any_len = to->sa_family == AF_INET6 ? (int)sizeof(struct sockaddr_in6)
                                            : (int)sizeof(struct sockaddr_in);
    if (bind(s, (struct sockaddr *)&any, any_len) != 0 && WSAGetLastError() != WSAEINVAL)
        return started(b, r, flags, false, 0, (DWORD)WSAGetLastError());
    DWORD bytes = 0;
    BOOL ok = st->connect_ex(s, to, (int)op->u.addr.addrlen_value, NULL, 0, &bytes, &r->ov);
    return started(b, r, flags, ok, bytes, ok ? 0 : (DWORD)WSAGetLastError());
}

/* The op's buffers as WSABUFs: one for RECV and SEND, the message's for the
 * datagram ops. */
static int fill_buffers(struct request *r, DWORD *count)
{
    struct eddy_op *op = r->op;
    if (op->kind == EDDY_OP_RECV || op->kind == EDDY_OP_SEND) {
        r->bufs[0].buf = op->u.io.buf;
        r->bufs[0].len = io_length(op->u.io.len);
        *count = 1;
        return 0;
    }
    const struct msghdr *msg = op->u.msg.msg;
    if (!msg || msg->msg_iovlen > MAX_IOV) return -EINVAL;
    for (size_t i = 0; i < msg->msg_iovlen; i++) {
        r->bufs[i].buf = msg->msg_iov[i].iov_base;
        r->bufs[i].len = io_length(msg->msg_iov[i].iov_len);
    }
    *count = (DWORD)msg->msg_iovlen;
    return 0;
}

static int start_socket_io(struct eddy_backend *b, struct request *r, int flags)
{
    struct eddy_op *op = r->op;
    SOCKET s = (SOCKET)op->fd;
    DWORD count, bytes = 0;
    if (fill_buffers(r, &count) < 0) {
        request_put(b->impl, r);
        return finish_now(op, -EINVAL);
    }
    int rc;
    switch (op->kind) {
    case EDDY_OP_RECV:
        rc = WSARecv(s, r->bufs, count, &bytes, &r->flags, &r->ov, NULL);
        break;
    case EDDY_OP_SEND:
        rc = WSASend(s, r->bufs, count, &bytes, 0, &r->ov, NULL);
        break;
    case EDDY_OP_RECVMSG:
        r->addrlen = op->u.msg.msg->msg_namelen;
        rc = WSARecvFrom(s, r->bufs, count, &bytes, &r->flags,
                         (struct sockaddr *)op->u.msg.msg->msg_name,
                         op->u.msg.msg->msg_name ? &r->addrlen : NULL, &r->ov, NULL);
        break;
    default: /* EDDY_OP_SENDMSG */
        rc = WSASendTo(s, r->bufs, count, &bytes, 0,
                       (const struct sockaddr *)op->u.msg.msg->msg_name,
                       op->u.msg.msg->msg_name ? op->u.msg.msg->msg_namelen : 0, &r->ov, NULL);
        break;
    }
    return started(b, r, flags, rc == 0, bytes, rc == 0 ? 0 : (DWORD)WSAGetLastError());
}

/* Offset -1 writes at the end of the file (O_APPEND; lib/fs.c keeps the
 * position of the other -1 calls, as an overlapped handle has none). */
static int start_file_io(struct eddy_backend *b, struct request *r, int flags)
{
    struct eddy_op *op = r->op;
    uint64_t offset = op->u.io.offset < 0 ? UINT64_MAX : (uint64_t)op->u.io.offset;
    r->ov.Offset = (DWORD)offset;
    r->ov.OffsetHigh = (DWORD)(offset >> 32);
    DWORD bytes = 0;
    BOOL ok;
    if (op->kind == EDDY_OP_READ)
        ok = ReadFile((HANDLE)op->fd, op->u.io.buf, io_length(op->u.io.len), &bytes, &r->ov);
    else
        ok = WriteFile((HANDLE)op->fd, op->u.io.buf, io_length(op->u.io.len), &bytes, &r->ov);
    return started(b, r, flags, ok, bytes, ok ? 0 : GetLastError());
}

/* ---- sendfile: TransmitFile -------------------------------------------------------- */

#define MAX_TRANSMIT_BYTES 0x7ffffffeu /* TransmitFile's most per call: 2 GiB - 2 */

/* EDDY_OP_SPLICE here (lib/sendfile.c): up to len bytes of the file op->fd,
 * from off_in, sent on the socket fd_out by one overlapped TransmitFile (the
 * offset in the OVERLAPPED). The I/O is the socket's: its packet comes
 * through the socket's association, and cancel() names the socket. A count
 * past the end of the file sends what is there; the result says how much. */
static int start_transmit(struct eddy_backend *b, struct eddy_op *op)
{
    struct iocp_state *st = b->impl;
    intptr_t sock = op->u.splice.fd_out;
    if (op->u.splice.off_in < 0 || op->u.splice.len == 0) return finish_now(op, -EINVAL);
    if (sock == -1 || sock == 0) return finish_now(op, -EBADF);
    struct eddy_op as_send = {.kind = EDDY_OP_SEND, .fd = sock}; /* associated as a send is */
    int flags = handle_adopt(st, &as_send);
    if (flags < 0) return finish_now(op, flags);
    struct request *r = request_get(st, op);
    if (!r) return -ENOMEM;
    uint64_t offset = (uint64_t)op->u.splice.off_in;
    r->ov.Offset = (DWORD)offset;
    r->ov.OffsetHigh = (DWORD)(offset >> 32);
    DWORD len =
        op->u.splice.len > MAX_TRANSMIT_BYTES ? MAX_TRANSMIT_BYTES : (DWORD)op->u.splice.len;
    BOOL ok = st->transmit_file((SOCKET)sock, (HANDLE)op->fd, len, 0, &r->ov, NULL, 0);
    DWORD error = ok ? 0 : (DWORD)WSAGetLastError();
    /* Done at once (and skipping the port): the count is in the OVERLAPPED. */
    return started(b, r, flags, ok, ok ? (DWORD)r->ov.InternalHigh : 0, error);
}

/* ---- fd watching: IOCTL_AFD_POLL ---------------------------------------------------- */

/* A failure NTSTATUS as a negative code. */
static int64_t nt_error(const struct iocp_state *st, LONG status)
{
    int64_t known = status_error((uint32_t)status);
    if (known <= 0) return known;
    if ((uint32_t)status == 0xC0000008u) return -EBADF; /* STATUS_INVALID_HANDLE */
    return eddy__win_error(st->nt_status ? st->nt_status(status) : ERROR_INVALID_FUNCTION);
}

/* The base handle (under any layered provider) of the socket fd, which AFD
 * knows; else -EBADF for a handle that is not open, -ENOTSUP for one that is
 * not a socket (a pipe, a file, a console: AFD has nothing to say on them). */
static int64_t base_socket(intptr_t fd, HANDLE *out)
{
    static const DWORD asks[] = {SIO_BASE_HANDLE, SIO_BSP_HANDLE_POLL, SIO_BSP_HANDLE_SELECT};
    int type, len = sizeof type;
    bool socket = getsockopt((SOCKET)fd, SOL_SOCKET, SO_TYPE, (char *)&type, &len) == 0;
    for (size_t i = 0; socket && i < sizeof asks / sizeof asks[0]; i++) {
        SOCKET base = INVALID_SOCKET;
        DWORD bytes = 0;
        if (WSAIoctl((SOCKET)fd, asks[i], NULL, 0, &base, sizeof base, &bytes, NULL, NULL) == 0 &&
            base != INVALID_SOCKET) {
            *out = (HANDLE)base;
            return 0;
        }
        if (WSAGetLastError() == WSAENOTSOCK) break;
    }
    DWORD info;
    return GetHandleInformation((HANDLE)fd, &info) ? -ENOTSUP : -EBADF;
}

/* The AFD endpoint the queries are sent to: a socket of the backend's own,
 * associated with the port. The watched socket is only named in the query,
 * never associated: it may belong to another port, or to none. Returns the
 * endpoint's flags (handle_adopt), or a negative code. */
static int poll_endpoint(struct iocp_state *st)
{
    if (!st->poll_socket) {
        SOCKET s = WSASocketW(AF_INET, SOCK_DGRAM, IPPROTO_UDP, NULL, 0,
                              WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
        if (s == INVALID_SOCKET) /* a host without IPv4 */
            s = WSASocketW(AF_INET6, SOCK_DGRAM, IPPROTO_UDP, NULL, 0,
                           WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
        if (s == INVALID_SOCKET) return (int)wsa_error();
        st->poll_socket = s;
    }
    struct eddy_op as_recv = {.kind = EDDY_OP_RECV, .fd = (intptr_t)st->poll_socket};
    return handle_adopt(st, &as_recv);
}

/* EDDY_OP_POLL: one query for one direction of one socket, which completes
 * through the port once the socket is ready that way, has an error or a
 * hang-up, or is closed (as wepoll and libuv's uv_poll do it). Sockets
 * only; a process (EDDY_OP_F_PROC) is not one. */
static int start_poll(struct eddy_backend *b, struct eddy_op *op)
{
    struct iocp_state *st = b->impl;
    unsigned event = (unsigned)op->u.io.flags;
    if (op->flags & EDDY_OP_F_PROC) return finish_now(op, -ENOTSUP);
    if (event != EDDY_READABLE && event != EDDY_WRITABLE) return finish_now(op, -EINVAL);
    HANDLE base;
    int64_t err = base_socket(op->fd, &base);
    if (err < 0) return finish_now(op, err);
    int flags = poll_endpoint(st);
    if (flags < 0) return finish_now(op, flags);
    struct request *r = request_get(st, op);
    if (!r) return -ENOMEM;
    ULONG events = AFD_POLL_ABORT | AFD_POLL_LOCAL_CLOSE | AFD_POLL_CONNECT_FAIL;
    events |= event == EDDY_READABLE ? AFD_POLL_RECEIVE | AFD_POLL_DISCONNECT | AFD_POLL_ACCEPT
                                     : AFD_POLL_SEND;
    r->poll = (struct afd_poll_info){.deadline = INT64_MAX, .count = 1, .socket = base};
    r->poll.events = events;
    /* The OVERLAPPED's first two words are the call's status block, and the
     * packet carries it back as its APC context. */
    LONG status = st->nt_ioctl((HANDLE)st->poll_socket, NULL, NULL, &r->ov, &r->ov, IOCTL_AFD_POLL,
                               &r->poll, sizeof r->poll, &r->poll, sizeof r->poll);
    if (status == NT_STATUS_PENDING) return started(b, r, flags, false, 0, ERROR_IO_PENDING);
    if (status >= 0) return started(b, r, flags, true, 0, 0);
    request_put(st, r);
    return finish_now(op, nt_error(st, status));
}

/* The handle an op's I/O was started on, which CancelIoEx must name. */
static HANDLE op_io_handle(const struct iocp_state *st, const struct eddy_op *op)
{
    switch (op->kind) {
    case EDDY_OP_POLL:
        return (HANDLE)st->poll_socket;
    case EDDY_OP_SPLICE:
        return (HANDLE)op->u.splice.fd_out;
    default:
        return (HANDLE)op->fd;
    }
}

/* ---- the ops table ----------------------------------------------------------------- */

static bool iocp_handles(const struct eddy_backend *b, enum eddy_op_kind kind)
{
    const struct iocp_state *st = b->impl;
    if (kind == EDDY_OP_POLL) return st->nt_ioctl != NULL;
    if (kind == EDDY_OP_SPLICE) return st->transmit_file != NULL;
    return is_socket_kind(kind) || kind == EDDY_OP_READ || kind == EDDY_OP_WRITE;
}

/* Sockets are closed with closesocket (a layered provider has its own
 * state), everything else with CloseHandle. Ops still pending on the handle
 * end through the port with -ECANCELED. */
static int64_t close_handle(struct iocp_state *st, intptr_t fd)
{
    handle_forget(st, (uintptr_t)fd);
    if (GetFileType((HANDLE)fd) == FILE_TYPE_PIPE) { /* what a socket reports */
        if (closesocket((SOCKET)fd) == 0) return 0;
        if (WSAGetLastError() != WSAENOTSOCK) return wsa_error();
    }
    return CloseHandle((HANDLE)fd) ? 0 : eddy__win_error(GetLastError());
}

static int iocp_submit(struct eddy_backend *b, struct eddy_op *op)
{
    struct iocp_state *st = b->impl;
    if (!iocp_handles(b, (enum eddy_op_kind)op->kind)) return -ENOTSUP;
    if (op->fd == -1 || op->fd == 0) return finish_now(op, -EBADF);
    op->backend_data = 0;
    switch (op->kind) {
    case EDDY_OP_CLOSE:
        return finish_now(op, close_handle(st, op->fd));
    case EDDY_OP_SHUTDOWN:
        return finish_now(op, shutdown((SOCKET)op->fd, op->u.io.flags) == 0 ? 0 : wsa_error());
    case EDDY_OP_POLL:
        return start_poll(b, op);
    case EDDY_OP_SPLICE:
        return start_transmit(b, op);
    default:
        break;
    }
    int flags = handle_adopt(st, op);
    if (flags < 0) return finish_now(op, flags);
    struct request *r = request_get(st, op);
    if (!r) return -ENOMEM;
    switch (op->kind) {
    case EDDY_OP_ACCEPT:
        return start_accept(b, r, flags);
    case EDDY_OP_CONNECT:
        return start_connect(b, r, flags);
    case EDDY_OP_READ:
    case EDDY_OP_WRITE:
        return start_file_io(b, r, flags);
    default:
        return start_socket_io(b, r, flags);
    }
}

/* Only asks: the packet still comes, aborted or with the op's result. */
static void iocp_cancel(struct eddy_backend *b, struct eddy_op *op)
{
    struct request *r = (struct request *)op->backend_data;
    if (!r) return;
    CancelIoEx(op_io_handle(b->impl, op),
               &r->ov); /* ERROR_NOT_FOUND: it finished; its packet is queued */
}

/* Rounds up: waking a little late is harmless, waking early spins. */
static DWORD timeout_ms(int64_t timeout_ns)
{
    if (timeout_ns < 0) return INFINITE;
    int64_t ms = timeout_ns / 1000000 + (timeout_ns % 1000000 != 0);
    return ms >= INFINITE ? INFINITE - 1 : (DWORD)ms;
}

static int iocp_poll(struct eddy_backend *b, int64_t timeout_ns)
{
    struct iocp_state *st = b->impl;
    ULONG n = 0;
    if (!GetQueuedCompletionStatusEx(st->port, st->entries, st->max_entries, &n,
                                     timeout_ms(timeout_ns), FALSE)) {
        DWORD code = GetLastError();
        return code == WAIT_TIMEOUT ? 0 : eddy__win_error(code);
    }
    int completed = 0;
    for (ULONG i = 0; i < n; i++) {
        OVERLAPPED_ENTRY *e = &st->entries[i];
        if (e->lpCompletionKey == WAKE_KEY) {
            InterlockedExchange(&st->wake_pending, 0);
            continue;
        }
        struct request *r = (struct request *)e->lpOverlapped;
        struct eddy_op *op = r->op;
        /* Internal is the NTSTATUS: ask Windows for the matching error code
         * only when it says the op failed. */
        int64_t result = (LONG)e->lpOverlapped->Internal >= 0
                             ? (int64_t)e->dwNumberOfBytesTransferred
                             : overlapped_error(r);
        result = op_outcome(st, r, result);
        op->backend_data = 0;
        request_put(st, r);
        eddy__op_finish(b, op, result);
        completed++;
    }
    return completed;
}

/* Thread-safe. One packet per burst of wakes: the loop takes everything
 * queued when it wakes. */
static int iocp_wake(struct eddy_backend *b)
{
    struct iocp_state *st = b->impl;
    if (InterlockedExchange(&st->wake_pending, 1)) return 0;
    if (PostQueuedCompletionStatus(st->port, 0, WAKE_KEY, NULL)) return 0;
    InterlockedExchange(&st->wake_pending, 0);
    return eddy__win_error(GetLastError());
}

static void iocp_free(struct eddy_backend *b)
{
    struct iocp_state *st = b->impl;
    if (!st) return;
    if (st->poll_socket) closesocket(st->poll_socket);
    CloseHandle(st->port);
    for (size_t i = 0; i < st->block_count; i++)
        free(st->blocks[i]);
    free(st->blocks);
    free(st->handles);
    free(st);
    b->impl = NULL;
}

/* The Winsock extensions are per provider; the base TCP provider's serve
 * every socket eddy makes. */
static int load_extension(SOCKET s, GUID guid, void *fn, size_t fn_size)
{
    DWORD bytes;
    if (WSAIoctl(s, SIO_GET_EXTENSION_FUNCTION_POINTER, &guid, sizeof guid, fn, (DWORD)fn_size,
                 &bytes, NULL, NULL) != 0)
        return (int)wsa_error();
    return 0;
}

static int load_extensions(struct iocp_state *st)
{
    SOCKET s = WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
    if (s == INVALID_SOCKET) return (int)wsa_error();
    GUID accept_guid = WSAID_ACCEPTEX, connect_guid = WSAID_CONNECTEX,
         addresses_guid = WSAID_GETACCEPTEXSOCKADDRS;
    int err = load_extension(s, accept_guid, &st->accept_ex, sizeof st->accept_ex);
    if (!err) err = load_extension(s, connect_guid, &st->connect_ex, sizeof st->connect_ex);
    if (!err)
        err = load_extension(s, addresses_guid, &st->accept_addresses, sizeof st->accept_addresses);
    closesocket(s);
    return err;
}

/* What fd watching and TransmitFile need, beyond the base set: ntdll's
 * ioctl call, and the extension. Neither is required: without them the
 * capabilities say less. EDDY_IOCP_TRANSMITFILE=0 does without TransmitFile,
 * as a provider that lacks it must (tests run the copy loop that way). */
static void load_optional(struct iocp_state *st)
{
    HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
    if (ntdll) {
        st->nt_ioctl = (nt_ioctl_fn)(void (*)(void))GetProcAddress(ntdll, "NtDeviceIoControlFile");
        st->nt_status =
            (nt_status_fn)(void (*)(void))GetProcAddress(ntdll, "RtlNtStatusToDosError");
    }
    const char *knob = getenv("EDDY_IOCP_TRANSMITFILE");
    if (knob && strcmp(knob, "0") == 0) return;
    SOCKET s = WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
    if (s == INVALID_SOCKET) return;
    GUID transmit_guid = WSAID_TRANSMITFILE;
    if (load_extension(s, transmit_guid, &st->transmit_file, sizeof st->transmit_file) < 0)
        st->transmit_file = NULL;
    closesocket(s);
}

static int iocp_init(struct eddy_backend *b, const eddy_loop_options *opts)
{
    int err = eddy__win_startup();
    if (err < 0) return err;
    ULONG max_entries = DEFAULT_ENTRIES;
    if (opts && opts->queue_depth)
        max_entries = opts->queue_depth < 4096 ? opts->queue_depth : 4096;
    struct iocp_state *st = calloc(1, sizeof *st + max_entries * sizeof st->entries[0]);
    if (!st) return -ENOMEM;
    st->max_entries = max_entries;
    st->port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1);
    if (!st->port) {
        err = eddy__win_error(GetLastError());
        free(st);
        return err;
    }
    if ((err = load_extensions(st)) < 0) {
        CloseHandle(st->port);
        free(st);
        return err;
    }
    load_optional(st);
    b->impl = st;
    b->pending = 0;
    return 0;
}

/* The same on every Windows 8+, but for what load_optional found: fd
 * watching and TransmitFile. */
static eddy_support iocp_supports(const struct eddy_backend *b, eddy_cap cap)
{
    switch (cap) {
    case EDDY_CAP_TCP:
    case EDDY_CAP_UDP:
    case EDDY_CAP_FILE_IO: /* overlapped reads and writes; open, sync, stat and paths in the pool */
    case EDDY_CAP_TIMERS:  /* the loop's timers, as GetQueuedCompletionStatusEx's timeout */
    case EDDY_CAP_CANCEL:  /* CancelIoEx */
    case EDDY_CAP_WAKEUP:  /* PostQueuedCompletionStatus */
    case EDDY_CAP_SIGNALS: /* console control events as SIGINT, SIGBREAK (lib/signal.c) */
    case EDDY_CAP_SUBPROCESS: /* CreateProcessW, overlapped named pipes (lib/process_win.c) */
        return EDDY_NATIVE;
    case EDDY_CAP_WATCH_FD: /* sockets: IOCTL_AFD_POLL through ntdll */
        return ((const struct iocp_state *)b->impl)->nt_ioctl ? EDDY_NATIVE : EDDY_NONE;
    case EDDY_CAP_SENDFILE: /* TransmitFile; else lib/sendfile.c's reads and sends */
        return ((const struct iocp_state *)b->impl)->transmit_file ? EDDY_NATIVE : EDDY_EMULATED;
    case EDDY_CAP_DNS: /* getaddrinfo in the thread pool */
        return EDDY_EMULATED;
    default: /* Unix sockets: not on Windows; zero-copy send: not
                implemented yet; multishot ops and buffer rings: io_uring only */
        return EDDY_NONE;
    }
}

const struct eddy_backend_ops eddy__iocp_backend = {
    .name = "iocp",
    .init = iocp_init,
    .free = iocp_free,
    .submit = iocp_submit,
    .cancel = iocp_cancel,
    .poll = iocp_poll,
    .wake = iocp_wake,
    .handles = iocp_handles,
    .supports = iocp_supports,
};
