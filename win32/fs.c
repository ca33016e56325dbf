/* SPDX-License-Identifier: MIT */
/* File and path ops with blocking Windows calls, run by the thread pool's
 * workers (lib/pool.c): open, fsync, stat, unlink, rmdir, rename, mkdir.
 * Reads and writes are the iocp backend's own (overlapped, at an offset).
 * Paths are UTF-8, turned into UTF-16 for the W calls. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../win32/win32.h"
#include "../backends/backend.h"

static int64_t last_error(void)
{
    return eddy__win_error(GetLastError());
}

/* open(2) flags and mode as CreateFileW's arguments; the handle is overlapped
 * (for the completion port) and shared as POSIX files are: others may read,
 * write, rename or delete it meanwhile. */
static int64_t file_open(const wchar_t *path, int flags, int mode)
{
    DWORD access;
    switch (flags & (O_RDONLY | O_WRONLY | O_RDWR)) {
    case O_WRONLY:
        access = GENERIC_WRITE;
        break;
    case O_RDWR:
        access = GENERIC_READ | GENERIC_WRITE;
        break;
    default:
        access = GENERIC_READ;
        break;
    }
    DWORD disposition;
    if ((flags & O_CREAT) && (flags & O_EXCL))
        disposition = CREATE_NEW;
    else if ((flags & O_CREAT) && (flags & O_TRUNC))
        disposition = CREATE_ALWAYS;
    else if (flags & O_CREAT)
        disposition = OPEN_ALWAYS;
    else if (flags & O_TRUNC)
        disposition = TRUNCATE_EXISTING;
    else
        disposition = OPEN_EXISTING;
    DWORD attributes = FILE_ATTRIBUTE_NORMAL;
    if ((flags & O_CREAT) && !(mode & 0200)) attributes = FILE_ATTRIBUTE_READONLY;
    HANDLE h = CreateFileW(path, access, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                           NULL, disposition, attributes | FILE_FLAG_OVERLAPPED, NULL);
    if (h == INVALID_HANDLE_VALUE) {
        DWORD code = GetLastError();
        /* A directory opened as a file: POSIX says EISDIR. */
        if (code == ERROR_ACCESS_DENIED) {
            DWORD a = GetFileAttributesW(path);
            if (a != INVALID_FILE_ATTRIBUTES && (a & FILE_ATTRIBUTE_DIRECTORY)) return -EISDIR;
        }
        return eddy__win_error(code);
    }
    return (int64_t)(intptr_t)h;
}

/* 100 ns ticks since 1601 as seconds since 1970. */
static time_t unix_time(FILETIME ft)
{
    uint64_t ticks = ((uint64_t)ft.dwHighDateTime << 32) | ft.dwLowDateTime;
    return (time_t)((int64_t)(ticks / 10000000u) - 11644473600LL);
}

static int64_t fill_stat(HANDLE h, struct stat *st)
{
    BY_HANDLE_FILE_INFORMATION info;
    if (!GetFileInformationByHandle(h, &info)) return last_error();
    memset(st, 0, sizeof(*st));
    bool dir = info.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY;
    unsigned perms = (info.dwFileAttributes & FILE_ATTRIBUTE_READONLY) ? 0444 : 0666;
    if (dir) perms |= 0111;
    st->st_mode = (unsigned short)((dir ? S_IFDIR : S_IFREG) | perms);
    st->st_nlink = (short)(info.nNumberOfLinks > 0x7fff ? 0x7fff : info.nNumberOfLinks);
    st->st_size = (off_t)(((uint64_t)info.nFileSizeHigh << 32) | info.nFileSizeLow);
    st->st_atime = unix_time(info.ftLastAccessTime);
    st->st_mtime = unix_time(info.ftLastWriteTime);
    st->st_ctime = unix_time(info.ftCreationTime);
    return 0;
}

static int64_t path_stat(const wchar_t *path, struct stat *st)
{
    /* Backup semantics: directories open too. */
    HANDLE h = CreateFileW(path, FILE_READ_ATTRIBUTES,
                           FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                           OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS, NULL);
    if (h == INVALID_HANDLE_VALUE) return last_error();
    int64_t r = fill_stat(h, st);
    CloseHandle(h);
    return r;
}

static int64_t path_op(struct eddy_op *op, const wchar_t *path, const wchar_t *path2)
{
    switch (op->kind) {
    case EDDY_OP_OPEN:
        return file_open(path, op->u.path.flags, op->u.path.mode);
    case EDDY_OP_STAT:
        return path_stat(path, op->u.path.statbuf);
    case EDDY_OP_UNLINK:
        if (op->u.path.flags) /* AT_REMOVEDIR */
            return RemoveDirectoryW(path) ? 0 : last_error();
        if (DeleteFileW(path)) return 0;
        if (GetLastError() == ERROR_ACCESS_DENIED) { /* unlink(2) on a directory: EISDIR */
            DWORD a = GetFileAttributesW(path);
            if (a != INVALID_FILE_ATTRIBUTES && (a & FILE_ATTRIBUTE_DIRECTORY)) return -EISDIR;
            SetLastError(ERROR_ACCESS_DENIED);
        }
        return last_error();
    case EDDY_OP_RENAME:
        return MoveFileExW(path, path2, MOVEFILE_REPLACE_EXISTING) ? 0 : last_error();
    case EDDY_OP_MKDIR:
        return CreateDirectoryW(path, NULL) ? 0 : last_error();
    default:
        return -ENOTSUP;
    }
}

int64_t eddy__win_file_op(struct eddy_op *op)
{
    HANDLE h = (HANDLE)op->fd;
    switch (op->kind) {
    case EDDY_OP_FSYNC:
        return FlushFileBuffers(h) ? 0 : last_error();
    case EDDY_OP_STAT:
        if (!op->u.path.path) return fill_stat(h, op->u.path.statbuf);
        break;
    case EDDY_OP_CLOSE:
        return CloseHandle(h) ? 0 : last_error();
    case EDDY_OP_OPEN:
    case EDDY_OP_UNLINK:
    case EDDY_OP_RENAME:
    case EDDY_OP_MKDIR:
        break;
    default:
        return -ENOTSUP;
    }
    wchar_t *path = eddy__win_wide(op->u.path.path);
    wchar_t *path2 = op->kind == EDDY_OP_RENAME ? eddy__win_wide(op->u.path.path2) : NULL;
    int64_t r;
    if (!path || (op->kind == EDDY_OP_RENAME && !path2))
        r = -EINVAL; /* not UTF-8, or out of memory */
    else
        r = path_op(op, path, path2);
    free(path);
    free(path2);
    return r;
}
