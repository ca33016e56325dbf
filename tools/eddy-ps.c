/* SPDX-License-Identifier: MIT */
/* eddy-ps PID: the tasks of every loop of a running process that uses eddy,
 * as eddy_loop_dump prints them, read from outside (docs/debugging.md).
 *
 * Nothing runs in the target and it is not stopped: eddy-ps finds the
 * library's debug registry (lib/registry.h) through the ELF symbol tables
 * of the files mapped in the process (/proc/PID/maps; libeddy.so, or the
 * executable when eddy is linked in statically), reads it and the loops and
 * tasks it leads to with process_vm_readv, and names code addresses with
 * the same symbol tables (.dynsym, and .symtab where the file has one). The
 * walk is lib/taskdump.c's, the library's own dump: the layouts come from
 * the registry's table, not from eddy's headers.
 *
 * Exit status: 0; 1 no such process, or it exited; 2 usage; 3 it does not
 * use eddy; 4 not permitted to read it; 5 its registry is not one this
 * eddy-ps reads, or could not be read. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "taskdump.h"

enum { EXIT_GONE = 1, EXIT_USAGE = 2, EXIT_NOT_EDDY = 3, EXIT_DENIED = 4, EXIT_UNREADABLE = 5 };

#define MAX_LOOPS 4096

#if defined(__x86_64__)
#define HOST_MACHINE EM_X86_64
#elif defined(__aarch64__)
#define HOST_MACHINE EM_AARCH64
#else
#define HOST_MACHINE EM_NONE
#endif

struct symbol {
    uint64_t addr, size;
    const char *name;
};

/* A file mapped in the target: its symbols, at their run-time addresses. */
struct module {
    char *path;
    const char *base_name;
    uint64_t load_bias;
    bool has_bias; /* its mapping at file offset 0 was seen */
    void *image;   /* the file, mapped here */
    size_t image_size;
    struct symbol *symbols; /* functions, sorted by address */
    size_t n_symbols;
    uint64_t registry; /* eddy_debug_registry's address, or 0 */
};

/* A range of the target's address space, and the module mapped there. */
struct range {
    uint64_t lo, hi;
    size_t module;
};

struct target {
    pid_t pid;
    char comm[64];
    struct module *modules;
    size_t n_modules;
    struct range *ranges;
    size_t n_ranges;
    int read_errno; /* the last failed read's */
};

static const char *prog = "eddy-ps";

/* ---- reading the target ---------------------------------------------------------- */

static int target_read(void *ctx, uint64_t addr, void *buf, size_t len)
{
    struct target *t = ctx;
    struct iovec local = {buf, len}, remote = {(void *)(uintptr_t)addr, len};
    if (len == 0) return 0;
    ssize_t n = process_vm_readv(t->pid, &local, 1, &remote, 1, 0);
    if (n == (ssize_t)len) return 0;
    t->read_errno = n < 0 ? errno : EFAULT;
    return n < 0 && errno != EFAULT ? -errno : -EFAULT;
}

/* ---- symbols ------------------------------------------------------------------- */

static int by_address(const void *a, const void *b)
{
    const struct symbol *x = a, *y = b;
    return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static bool in_image(const struct module *m, uint64_t off, uint64_t len)
{
    return off <= m->image_size && len <= m->image_size - off;
}

/* Adds the functions of one symbol table, and notes the registry. */
static void read_symtab(struct module *m, const Elf64_Shdr *sh, const Elf64_Shdr *strtab)
{
    if (sh->sh_entsize != sizeof(Elf64_Sym) || !in_image(m, sh->sh_offset, sh->sh_size) ||
        !in_image(m, strtab->sh_offset, strtab->sh_size) || strtab->sh_size == 0)
        return;
    const Elf64_Sym *syms = (const Elf64_Sym *)((const char *)m->image + sh->sh_offset);
    const char *strs = (const char *)m->image + strtab->sh_offset;
    size_t n = sh->sh_size / sizeof *syms;
    struct symbol *grown = realloc(m->symbols, (m->n_symbols + n) * sizeof *grown);
    if (!grown) return;
    m->symbols = grown;
    for (size_t i = 0; i < n; i++) {
        const Elf64_Sym *s = &syms[i];
        if (s->st_shndx == SHN_UNDEF || s->st_name >= strtab->sh_size) continue;
        const char *name = strs + s->st_name;
        if (!memchr(name, '\0', strtab->sh_size - s->st_name) || !name[0]) continue;
        int type = ELF64_ST_TYPE(s->st_info);
        if (type == STT_OBJECT && strcmp(name, EDDY__REGISTRY_SYMBOL) == 0)
            m->registry = m->load_bias + s->st_value;
        if ((type == STT_FUNC || type == STT_GNU_IFUNC) && s->st_value)
            m->symbols[m->n_symbols++] =
                (struct symbol){m->load_bias + s->st_value, s->st_size, name};
    }
}

/* Maps the module's file and reads its symbol tables; the load bias comes
 * from its first PT_LOAD and where the target mapped file offset 0. */
static void load_module(struct target *t, struct module *m, uint64_t start)
{
    int fd = open(m->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        /* in another mount namespace, or deleted: through /proc */
        char alt[4096];
        snprintf(alt, sizeof alt, "/proc/%d/root%s", (int)t->pid, m->path);
        fd = open(alt, O_RDONLY | O_CLOEXEC);
    }
    struct stat st;
    if (fd < 0) return;
    if (fstat(fd, &st) < 0 || st.st_size < (off_t)sizeof(Elf64_Ehdr)) {
        close(fd);
        return;
    }
    void *image = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (image == MAP_FAILED) return;
    m->image = image;
    m->image_size = (size_t)st.st_size;
    const Elf64_Ehdr *eh = image;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_machine != HOST_MACHINE || eh->e_phentsize != sizeof(Elf64_Phdr) ||
        eh->e_shentsize != sizeof(Elf64_Shdr) ||
        !in_image(m, eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr)) ||
        !in_image(m, eh->e_shoff, (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr)))
        return;
    const Elf64_Phdr *ph = (const Elf64_Phdr *)((const char *)image + eh->e_phoff);
    for (size_t i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_LOAD) {
            uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
            m->load_bias = start - ((ph[i].p_vaddr - ph[i].p_offset) & ~(page - 1));
            break;
        }
    const Elf64_Shdr *sh = (const Elf64_Shdr *)((const char *)image + eh->e_shoff);
    for (size_t i = 0; i < eh->e_shnum; i++)
        if ((sh[i].sh_type == SHT_SYMTAB || sh[i].sh_type == SHT_DYNSYM) &&
            sh[i].sh_link < eh->e_shnum)
            read_symtab(m, &sh[i], &sh[sh[i].sh_link]);
    qsort(m->symbols, m->n_symbols, sizeof *m->symbols, by_address);
}

static const struct module *module_at(const struct target *t, uint64_t addr)
{
    for (size_t i = 0; i < t->n_ranges; i++)
        if (addr >= t->ranges[i].lo && addr < t->ranges[i].hi)
            return &t->modules[t->ranges[i].module];
    return NULL;
}

/* The function holding addr, or NULL. */
static const struct symbol *symbol_at(const struct module *m, uint64_t addr)
{
    size_t lo = 0, hi = m->n_symbols;
    while (lo < hi) { /* the first symbol past addr */
        size_t mid = lo + (hi - lo) / 2;
        if (m->symbols[mid].addr <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* the last starting at or before addr that holds it (sizes: 0 = unknown) */
    for (size_t i = lo; i-- > 0 && lo - i <= 8;) {
        const struct symbol *s = &m->symbols[i];
        if (!s->size || addr - s->addr < s->size) return s;
    }
    return NULL;
}

static bool target_function_name(void *ctx, uint64_t addr, char *buf, size_t len)
{
    const struct module *m = module_at(ctx, addr);
    const struct symbol *s = m ? symbol_at(m, addr) : NULL;
    if (!s) return false;
    snprintf(buf, len, "%s", s->name);
    return true;
}

static void target_describe_return(void *ctx, uint64_t pc, char *buf, size_t len)
{
    /* a return address is just past its call: name the call's function */
    const struct module *m = module_at(ctx, pc - 1);
    const struct symbol *s = m ? symbol_at(m, pc - 1) : NULL;
    if (s)
        snprintf(buf, len, "%s+0x%llx", s->name, (unsigned long long)(pc - s->addr));
    else if (m)
        snprintf(buf, len, "(%s+0x%llx)", m->base_name, (unsigned long long)(pc - m->load_bias));
    else
        snprintf(buf, len, "?");
}

/* ---- the process ------------------------------------------------------------------ */

static size_t module_index(struct target *t, const char *path)
{
    for (size_t i = 0; i < t->n_modules; i++)
        if (strcmp(t->modules[i].path, path) == 0) return i;
    struct module *grown = realloc(t->modules, (t->n_modules + 1) * sizeof *grown);
    char *copy = strdup(path);
    if (!grown || !copy) {
        fprintf(stderr, "%s: out of memory\n", prog);
        exit(EXIT_UNREADABLE);
    }
    t->modules = grown;
    struct module *m = &t->modules[t->n_modules];
    memset(m, 0, sizeof *m);
    m->path = copy;
    const char *slash = strrchr(copy, '/');
    m->base_name = slash ? slash + 1 : copy;
    return t->n_modules++;
}

/* Reads /proc/PID/maps: the file-backed ranges, and each file's symbols.
 * 0, or an errno. */
static int read_maps(struct target *t)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)t->pid);
    FILE *f = fopen(path, "re");
    if (!f) return errno;
    char line[4096 + 128];
    while (fgets(line, sizeof line, f)) {
        unsigned long long lo, hi, off;
        int name_at = 0;
        if (sscanf(line, "%llx-%llx %*s %llx %*s %*s %n", &lo, &hi, &off, &name_at) < 3 ||
            !name_at || line[name_at] != '/')
            continue;
        line[strcspn(line, "\n")] = '\0';
        char *file = line + name_at;
        char *deleted = strstr(file, " (deleted)");
        if (deleted) *deleted = '\0';
        size_t mi = module_index(t, file);
        struct range *grown = realloc(t->ranges, (t->n_ranges + 1) * sizeof *grown);
        if (!grown) break;
        t->ranges = grown;
        t->ranges[t->n_ranges++] = (struct range){lo, hi, mi};
        if (off == 0 && !t->modules[mi].has_bias) {
            t->modules[mi].has_bias = true;
            load_module(t, &t->modules[mi], lo);
        }
    }
    int err = ferror(f) ? EIO : 0;
    fclose(f);
    /* reading maps of a process one may not trace gives an empty file */
    if (err == 0 && t->n_ranges == 0 && access(path, R_OK) == 0) {
        char mem[64];
        snprintf(mem, sizeof mem, "/proc/%d/mem", (int)t->pid);
        int fd = open(mem, O_RDONLY | O_CLOEXEC);
        if (fd < 0 && (errno == EACCES || errno == EPERM)) return errno;
        if (fd >= 0) close(fd);
    }
    return err;
}

static bool process_exists(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    return access(path, F_OK) == 0;
}

static void read_comm(struct target *t)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/comm", (int)t->pid);
    FILE *f = fopen(path, "re");
    strcpy(t->comm, "?");
    if (!f) return;
    if (fgets(t->comm, sizeof t->comm, f)) t->comm[strcspn(t->comm, "\n")] = '\0';
    fclose(f);
}

/* What is needed to read another process, as ptrace(2)'s access mode check
 * has it (process_vm_readv asks for PTRACE_MODE_ATTACH_REALCREDS). */
static int denied(const struct target *t, int err)
{
    fprintf(stderr, "%s: may not read process %d (%s): %s\n", prog, (int)t->pid, t->comm,
            strerror(err));
    fprintf(
        stderr,
        "%s reads a process's memory with process_vm_readv, which needs ptrace access to it:\n"
        "  - the same user id as the process (which must not have changed ids, or be\n"
        "    undumpable), or the CAP_SYS_PTRACE capability (e.g. run it as root: sudo %s %d);\n",
        prog, prog, (int)t->pid);
    FILE *f = fopen("/proc/sys/kernel/yama/ptrace_scope", "re");
    int scope = -1;
    if (f) {
        if (fscanf(f, "%d", &scope) != 1) scope = -1;
        fclose(f);
    }
    if (scope >= 0)
        fprintf(
            stderr,
            "  - and Yama's kernel.yama.ptrace_scope, %d here, allows it: 0 lets the same user\n"
            "    read any of its processes; 1 only descendants (or a process that named the\n"
            "    reader with prctl(PR_SET_PTRACER)) without CAP_SYS_PTRACE; 2 needs\n"
            "    CAP_SYS_PTRACE; 3 forbids it to all (sysctl kernel.yama.ptrace_scope=0 to\n"
            "    allow the same user).\n",
            scope);
    else
        fprintf(stderr, "  - (no Yama ptrace_scope restriction is set on this kernel)\n");
    return EXIT_DENIED;
}

static int gone(const struct target *t)
{
    fprintf(stderr, "%s: process %d (%s) exited while it was being read\n", prog, (int)t->pid,
            t->comm);
    return EXIT_GONE;
}

/* The outcome of a failed read of the target. */
static int read_failed(const struct target *t, const char *what)
{
    if (!process_exists(t->pid)) return gone(t);
    if (t->read_errno == EPERM || t->read_errno == EACCES) return denied(t, t->read_errno);
    fprintf(stderr, "%s: could not read %s of process %d (%s): %s\n", prog, what, (int)t->pid,
            t->comm, strerror(t->read_errno));
    return EXIT_UNREADABLE;
}

/* ---- the dump ----------------------------------------------------------------- */

/* The loops of the registry at addr, in *loops: their count, or -1 when
 * the list could not be read whole. */
static int read_loops(struct target *t, uint64_t addr, const struct eddy__debug_registry *reg,
                      uint64_t *loops)
{
    const struct eddy__debug_layout *L = &reg->layout;
    uint64_t head = addr + offsetof(struct eddy__debug_registry, loops), prev = head, node;
    int n = 0;
    if (target_read(t, head + L->list_next.offset, &node, 8) < 0) return -1;
    while (node != head) {
        uint64_t back;
        if (n >= MAX_LOOPS || node == prev || /* a node out of the list points at itself */
            target_read(t, node + L->list_prev.offset, &back, 8) < 0 || back != prev)
            return -1;
        loops[n++] = node - L->loop_link.offset;
        prev = node;
        if (target_read(t, node + L->list_next.offset, &node, 8) < 0) return -1;
    }
    return n;
}

/* The loop list as it is at one moment (the registry's seqlock): its
 * count, and the generation it was read at; -1 when loops kept joining or
 * leaving through every attempt. */
static int read_loops_still(struct target *t, uint64_t addr, const struct eddy__debug_registry *reg,
                            uint64_t *loops, uint64_t *generation)
{
    uint64_t gen_at = addr + offsetof(struct eddy__debug_registry, generation);
    for (int attempt = 0; attempt < 100; attempt++) {
        uint64_t before, after;
        if (target_read(t, gen_at, &before, 8) < 0) return -1;
        int n = before % 2 ? -1 : read_loops(t, addr, reg, loops);
        if (n >= 0 && target_read(t, gen_at, &after, 8) == 0 && after == before) {
            *generation = before;
            return n;
        }
        nanosleep(&(struct timespec){0, 1000000}, NULL); /* a loop is joining or leaving */
    }
    return -1;
}

static bool listed(const uint64_t *loops, int n, uint64_t loop)
{
    for (int i = 0; i < n; i++)
        if (loops[i] == loop) return true;
    return false;
}

/* Reads the loop list, then dumps each loop (lib/taskdump.c retries a loop
 * whose tasks change under it); a loop that left the list meanwhile was
 * freed while it was read, and is said so instead. */
static int dump(struct target *t, uint64_t addr)
{
    struct eddy__debug_registry reg;
    if (target_read(t, addr, &reg, sizeof reg) < 0) return read_failed(t, "eddy's registry");
    if (memcmp(reg.magic, EDDY__REGISTRY_MAGIC, sizeof reg.magic) != 0 ||
        reg.pointer_size != sizeof(void *)) {
        fprintf(stderr, "%s: process %d (%s): %s at 0x%llx is not an eddy registry\n", prog,
                (int)t->pid, t->comm, EDDY__REGISTRY_SYMBOL, (unsigned long long)addr);
        return EXIT_UNREADABLE;
    }
    if (reg.version != EDDY__REGISTRY_VERSION || reg.size < sizeof reg) {
        fprintf(stderr,
                "%s: process %d (%s) has eddy's registry version %u; this eddy-ps reads "
                "version %d: use the eddy-ps of the eddy it runs with\n",
                prog, (int)t->pid, t->comm, reg.version, EDDY__REGISTRY_VERSION);
        return EXIT_UNREADABLE;
    }
    static uint64_t loops[MAX_LOOPS], still[MAX_LOOPS];
    uint64_t generation, later;
    int n = read_loops_still(t, addr, &reg, loops, &generation);
    if (n < 0) {
        if (!process_exists(t->pid)) return gone(t);
        fprintf(stderr, "%s: process %d (%s) kept creating or freeing loops\n", prog, (int)t->pid,
                t->comm);
        return EXIT_UNREADABLE;
    }
    struct eddy__dump_source src = {
        .layout = &reg.layout,
        .read = target_read,
        .function_name = target_function_name,
        .describe_return = target_describe_return,
        .ctx = t,
        .live = true,
    };
    char **texts = calloc((size_t)n + 1, sizeof *texts);
    size_t *lens = calloc((size_t)n + 1, sizeof *lens);
    int status = texts && lens ? 0 : EXIT_UNREADABLE;
    for (int i = 0; i < n && status == 0; i++) {
        FILE *out = open_memstream(&texts[i], &lens[i]);
        if (!out) {
            status = EXIT_UNREADABLE;
            break;
        }
        int err = eddy__dump_loop(&src, loops[i], out);
        if (err < 0 && err != -ENOMEM && err != -EIO)
            fprintf(out, "loop 0x%llx: unreadable (%s)\n", (unsigned long long)loops[i],
                    strerror(-err));
        if (fclose(out) != 0 || err == -ENOMEM || err == -EIO) status = EXIT_UNREADABLE;
    }
    if (status == 0 && !process_exists(t->pid)) status = gone(t);
    int n_still = n;
    if (status == 0 &&
        (target_read(t, addr + offsetof(struct eddy__debug_registry, generation), &later, 8) < 0 ||
         later != generation)) {
        n_still = read_loops_still(t, addr, &reg, still, &later);
        if (n_still < 0) n_still = 0;
    } else {
        memcpy(still, loops, (size_t)n * sizeof *loops);
    }
    if (status == 0) {
        printf("process %d (%s): %d loop%s\n", (int)t->pid, t->comm, n, n == 1 ? "" : "s");
        for (int i = 0; i < n; i++)
            if (listed(still, n_still, loops[i]))
                fwrite(texts[i], 1, lens[i], stdout);
            else
                printf("loop 0x%llx: freed while it was read\n", (unsigned long long)loops[i]);
        if (fflush(stdout) != 0) status = EXIT_UNREADABLE;
    } else if (status == EXIT_UNREADABLE) {
        fprintf(stderr, "%s: %s\n", prog, strerror(ENOMEM));
    }
    for (int i = 0; texts && i < n; i++)
        free(texts[i]);
    free(texts);
    free(lens);
    return status;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: %s PID\n"
            "Lists the tasks of every eddy loop in process PID, with what each waits on,\n"
            "who awaits it and its backtrace, without stopping it (eddy-ps(1)).\n",
            prog);
}

static void target_free(struct target *t)
{
    for (size_t i = 0; i < t->n_modules; i++) {
        if (t->modules[i].image) munmap(t->modules[i].image, t->modules[i].image_size);
        free(t->modules[i].symbols);
        free(t->modules[i].path);
    }
    free(t->modules);
    free(t->ranges);
}

static int run(struct target *t)
{
    int err = read_maps(t);
    if (err == EACCES || err == EPERM) return denied(t, err);
    if (err) {
        if (!process_exists(t->pid)) return gone(t);
        fprintf(stderr, "%s: cannot read /proc/%d/maps: %s\n", prog, (int)t->pid, strerror(err));
        return EXIT_UNREADABLE;
    }
    uint64_t registry = 0;
    for (size_t i = 0; i < t->n_modules && !registry; i++)
        registry = t->modules[i].registry;
    if (!registry) {
        if (!process_exists(t->pid)) return gone(t);
        fprintf(stderr,
                "%s: process %d (%s) does not use eddy: none of the files it maps defines %s\n"
                "(a program linked with a static libeddy needs its symbol table: not stripped)\n",
                prog, (int)t->pid, t->comm, EDDY__REGISTRY_SYMBOL);
        return EXIT_NOT_EDDY;
    }
    return dump(t, registry);
}

int main(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return 0;
    }
    char *end;
    long pid = argc == 2 ? strtol(argv[1], &end, 10) : 0;
    if (argc != 2 || !argv[1][0] || *end || pid <= 0 || pid > 0x3fffffff) {
        usage(stderr);
        return EXIT_USAGE;
    }
    struct target t = {.pid = (pid_t)pid};
    if (!process_exists(t.pid)) {
        fprintf(stderr, "%s: no process %ld\n", prog, pid);
        return EXIT_GONE;
    }
    read_comm(&t);
    int status = run(&t);
    target_free(&t);
    return status;
}
