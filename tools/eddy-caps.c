/* SPDX-License-Identifier: MIT */
/* eddy-caps: what each backend supports (docs/design.md, "Backends and the capability table").
 *
 *   eddy-caps              the capability table, with the columns of the backends
 *                          that run here probed on this machine, then which
 *                          backends are available and which one a default loop picks
 *   eddy-caps --static     the table alone, the same on every machine: README.md's copy
 *   eddy-caps --platforms  docs/platforms.md: per platform, what works, what is
 *                          emulated and how, what is absent
 *   eddy-caps --json       all of it, for programs
 *   eddy-caps --version    the library's release number
 *
 * Support levels come from the public API; the notes and platform texts from
 * the table the library was built with (lib/caps_table.h, static data). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eddy.h"
#include "caps_table.h"

#define MAX_NOTES 64

static const char *support_name(eddy_support s)
{
    switch (s) {
    case EDDY_NATIVE:
        return "native";
    case EDDY_EMULATED:
        return "emulated";
    default:
        return "none";
    }
}

/* The symbolic name of a negative error code, for "refused (EPERM)". */
static const char *error_name(int err)
{
    static char other[32];
    switch (-err) {
    case EPERM:
        return "EPERM";
    case ENOENT:
        return "ENOENT";
    case ENOMEM:
        return "ENOMEM";
    case EACCES:
        return "EACCES";
    case EBUSY:
        return "EBUSY";
    case EINVAL:
        return "EINVAL";
    case EMFILE:
        return "EMFILE";
    case ENFILE:
        return "ENFILE";
    case ENOSYS:
        return "ENOSYS";
    case ENOTSUP:
        return "ENOTSUP";
    default:
        snprintf(other, sizeof other, "error %d", -err);
        return other;
    }
}

static bool compiled_in(const char *name)
{
    const char *names[16];
    size_t count = eddy_backends(names, 16);
    for (size_t i = 0; i < count && i < 16; i++)
        if (strcmp(names[i], name) == 0) return true;
    return false;
}

/* Why a backend cannot run here, in words. */
static void print_unavailable(const struct eddy__caps_row *row, int err)
{
    if (err == -ENOTSUP && row->status)
        printf("%s", row->status);
    else if (err == -ENOTSUP && row->build)
        printf("not built; to build it, %s", row->build);
    else if (err == -ENOTSUP)
        printf("not built for this platform");
    else
        printf("refused (%s: %s)", error_name(err), eddy_strerror(err));
}

/* ---- the table ------------------------------------------------------------------- */

/* Notes become numbered footnotes; equal notes share a number. */
struct notes {
    const char *text[MAX_NOTES];
    size_t count;
};

static size_t note_number(struct notes *n, const char *text)
{
    for (size_t i = 0; i < n->count; i++)
        if (strcmp(n->text[i], text) == 0) return i + 1;
    if (n->count == MAX_NOTES) return 0;
    n->text[n->count++] = text;
    return n->count;
}

static void print_cell(const struct eddy__caps_row *row, eddy_cap cap, bool probed,
                       struct notes *notes)
{
    const struct eddy__caps_cell *cell = &row->cells[cap];
    eddy_support shown = cell->support;
    if (probed) shown = eddy_backend_supports(row->name, cap);
    printf(" %s", support_name(shown));
    if (shown != cell->support) printf(" (table: %s)", support_name(cell->support));
    if (cell->note) printf(" [%zu]", note_number(notes, cell->note));
    printf(" |");
}

/* Rows are capabilities, columns backends. probed: the columns of backends
 * available here show this machine's answers. */
static void print_table(bool probed)
{
    struct notes notes = {.count = 0};
    bool planned = false, any_probed = false;
    bool here[EDDY__CAPS_ROW_COUNT];
    printf("| capability |");
    for (size_t i = 0; i < EDDY__CAPS_ROW_COUNT; i++) {
        const struct eddy__caps_row *row = &eddy__caps_rows[i];
        here[i] = probed && eddy_backend_available(row->name) == 0;
        any_probed |= here[i];
        planned |= row->status != NULL;
        printf(" %s%s |", row->name, row->status ? " (planned)" : here[i] ? " (here)" : "");
    }
    printf("\n|---|");
    for (size_t i = 0; i < EDDY__CAPS_ROW_COUNT; i++)
        printf("---|");
    printf("\n");
    for (unsigned cap = 0; cap < EDDY_CAP_COUNT; cap++) {
        printf("| %s |", eddy_cap_name((eddy_cap)cap));
        for (size_t i = 0; i < EDDY__CAPS_ROW_COUNT; i++)
            print_cell(&eddy__caps_rows[i], (eddy_cap)cap, here[i], &notes);
        printf("\n");
    }
    printf("\n");
    for (size_t i = 0; i < notes.count; i++)
        printf("%zu. %s\n", i + 1, notes.text[i]);
    if (planned)
        printf("\n(planned): the backend is not written yet; its column is its design, which is "
               "what `eddy_backend_supports()` answers for it.\n");
    if (any_probed)
        printf("\n(here): probed on this machine; a cell that differs from the static table says "
               "so.\n");
}

/* ---- this machine ------------------------------------------------------------------ */

/* Which backend a default loop picks, and why. */
static void print_default_loop(void)
{
    const char *forced = getenv("EDDY_BACKEND");
    if (forced && (!*forced || strcmp(forced, "auto") == 0)) forced = NULL;
    eddy_loop *loop = NULL;
    int err = eddy_loop_new(&loop, NULL);
    const char *picked = err == 0 ? eddy_loop_backend(loop) : NULL;
    printf("Default loop: %s", picked ? picked : "none");
    if (forced) {
        printf(" (EDDY_BACKEND=%s", forced);
        if (err < 0) printf(": %s", eddy_strerror(err));
        printf(")\n");
    } else {
        const char *names[16];
        size_t count = eddy_backends(names, 16);
        bool refused = false;
        for (size_t i = 0; i < count && i < 16; i++) {
            int why = eddy_backend_available(names[i]);
            if (why == 0) break;
            printf("%s%s: refused (%s)", refused ? ", " : " (", names[i], error_name(why));
            refused = true;
        }
        if (refused && picked)
            printf(", using %s)\n", picked);
        else if (refused)
            printf(")\n");
        else
            printf(", the first of eddy_backends() that initialises\n");
    }
    if (loop) eddy_loop_free(loop);
}

static void print_machine(void)
{
    printf("\n## This machine\n\n");
    const char *names[16];
    size_t count = eddy_backends(names, 16);
    printf("Compiled in, in preference order:");
    for (size_t i = 0; i < count && i < 16; i++)
        printf("%s %s", i ? "," : "", names[i]);
    printf("\n\n");
    for (size_t i = 0; i < EDDY__CAPS_ROW_COUNT; i++) {
        const struct eddy__caps_row *row = &eddy__caps_rows[i];
        int err = eddy_backend_available(row->name);
        printf("- %s: ", row->name);
        if (err == 0)
            printf("available");
        else
            print_unavailable(row, err);
        printf("\n");
    }
    printf("\n");
    print_default_loop();
}

/* ---- docs/platforms.md ------------------------------------------------------------- */

/* The capabilities row offers at level, grouped by note: "a, b (note); c". */
static bool print_level(const struct eddy__caps_row *row, eddy_support level)
{
    bool done[EDDY_CAP_COUNT] = {false};
    bool any = false;
    for (unsigned cap = 0; cap < EDDY_CAP_COUNT; cap++) {
        if (done[cap] || row->cells[cap].support != level) continue;
        const char *note = row->cells[cap].note;
        printf("%s", any ? "; " : "");
        any = true;
        bool first = true;
        for (unsigned other = cap; other < EDDY_CAP_COUNT; other++) {
            const struct eddy__caps_cell *cell = &row->cells[other];
            if (done[other] || cell->support != level) continue;
            if (!(cell->note == note || (cell->note && note && strcmp(cell->note, note) == 0)))
                continue;
            printf("%s`%s`", first ? "" : ", ", eddy_cap_name((eddy_cap)other));
            first = false;
            done[other] = true;
        }
        if (note) printf(" (%s)", note);
    }
    return any;
}

static void print_backend_section(const struct eddy__caps_row *row)
{
    printf("### %s\n\n", row->name);
    printf("A %s backend; %s.", row->family, row->where);
    if (row->status) printf(" Status: %s; the lists below are its design.", row->status);
    printf("\n\n");
    static const struct {
        eddy_support level;
        const char *label;
    } levels[] = {{EDDY_NATIVE, "Native"}, {EDDY_EMULATED, "Emulated"}, {EDDY_NONE, "Absent"}};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        printf("- **%s**: ", levels[i].label);
        if (!print_level(row, levels[i].level)) printf("nothing");
        printf(".\n");
    }
    printf("\n");
}

static const struct eddy__caps_row *row_named(const char *name)
{
    for (size_t i = 0; i < EDDY__CAPS_ROW_COUNT; i++)
        if (strcmp(eddy__caps_rows[i].name, name) == 0) return &eddy__caps_rows[i];
    return NULL;
}

static void print_platforms(void)
{
    printf("# Platforms\n\n");
    printf("*Generated by `eddy-caps --platforms` from the capability table "
           "(`lib/caps_table.h`), down to the build notes; do not edit that part by hand: "
           "change the table, then run `make update-caps-docs`.*\n\n");
    printf("What eddy offers on each platform, backend by backend: what works natively, what "
           "is emulated and how, and what is absent. An op that needs an absent capability "
           "returns `-ENOTSUP`. This page is the static table; `eddy-caps` and "
           "`eddy_backend_supports()` answer for the machine in hand "
           "([capabilities](capabilities.md)).\n\n");
    for (size_t p = 0; p < EDDY__CAPS_PLATFORM_COUNT; p++) {
        const struct eddy__caps_platform *platform = &eddy__caps_platforms[p];
        printf("## %s\n\n", platform->name);
        printf("Backends, in the order a default loop tries them:");
        for (size_t i = 0; platform->backends[i]; i++)
            printf("%s `%s`", i ? "," : "", platform->backends[i]);
        printf(". %s\n\n", platform->text);
        for (size_t i = 0; platform->backends[i]; i++) {
            const struct eddy__caps_row *row = row_named(platform->backends[i]);
            if (row) print_backend_section(row);
        }
    }
    printf("## The capabilities\n\n");
    for (unsigned cap = 0; cap < EDDY_CAP_COUNT; cap++)
        printf("- `%s`: %s.\n", eddy_cap_name((eddy_cap)cap), eddy__caps_descriptions[cap]);
}

/* ---- JSON ------------------------------------------------------------------------------ */

static void json_string(const char *s)
{
    if (!s) {
        printf("null");
        return;
    }
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void json_levels(const struct eddy__caps_row *row, bool probed)
{
    printf("{");
    for (unsigned cap = 0; cap < EDDY_CAP_COUNT; cap++) {
        eddy_support s =
            probed ? eddy_backend_supports(row->name, (eddy_cap)cap) : row->cells[cap].support;
        printf("%s\"%s\": \"%s\"", cap ? ", " : "", eddy_cap_name((eddy_cap)cap), support_name(s));
    }
    printf("}");
}

static void json_backend(const struct eddy__caps_row *row)
{
    int err = eddy_backend_available(row->name);
    printf("    {\"name\": ");
    json_string(row->name);
    printf(", \"where\": ");
    json_string(row->where);
    printf(", \"family\": ");
    json_string(row->family);
    printf(", \"written\": %s, \"compiled\": %s, \"available\": %s, \"error\": ",
           row->status ? "false" : "true", compiled_in(row->name) ? "true" : "false",
           err == 0 ? "true" : "false");
    json_string(err == 0 ? NULL : error_name(err));
    printf(", \"build\": ");
    json_string(compiled_in(row->name) ? NULL : row->build);
    printf(",\n     \"table\": ");
    json_levels(row, false);
    printf(",\n     \"here\": ");
    if (err == 0)
        json_levels(row, true);
    else
        printf("null");
    printf(",\n     \"notes\": {");
    bool first = true;
    for (unsigned cap = 0; cap < EDDY_CAP_COUNT; cap++) {
        if (!row->cells[cap].note) continue;
        printf("%s\"%s\": ", first ? "" : ", ", eddy_cap_name((eddy_cap)cap));
        json_string(row->cells[cap].note);
        first = false;
    }
    printf("}}");
}

static void print_json(void)
{
    printf("{\n  \"capabilities\": [");
    for (unsigned cap = 0; cap < EDDY_CAP_COUNT; cap++)
        printf("%s\"%s\"", cap ? ", " : "", eddy_cap_name((eddy_cap)cap));
    printf("],\n  \"preference\": [");
    const char *names[16];
    size_t count = eddy_backends(names, 16);
    for (size_t i = 0; i < count && i < 16; i++)
        printf("%s\"%s\"", i ? ", " : "", names[i]);
    printf("],\n  \"backends\": [\n");
    for (size_t i = 0; i < EDDY__CAPS_ROW_COUNT; i++) {
        json_backend(&eddy__caps_rows[i]);
        printf("%s\n", i + 1 < EDDY__CAPS_ROW_COUNT ? "," : "");
    }
    eddy_loop *loop = NULL;
    int err = eddy_loop_new(&loop, NULL);
    printf("  ],\n  \"default_loop\": {\"backend\": ");
    json_string(err == 0 ? eddy_loop_backend(loop) : NULL);
    printf(", \"error\": ");
    json_string(err == 0 ? NULL : error_name(err));
    printf(", \"forced_by\": ");
    const char *forced = getenv("EDDY_BACKEND");
    json_string(forced && *forced && strcmp(forced, "auto") != 0 ? forced : NULL);
    printf("}\n}\n");
    if (loop) eddy_loop_free(loop);
}

static int usage(FILE *out, int status)
{
    fprintf(out, "usage: eddy-caps [--static | --platforms | --json | --version]\n"
                 "  (none)       the capability table probed here, and the backends available\n"
                 "  --static     the table alone, the same on every machine (README.md)\n"
                 "  --platforms  what each platform offers (docs/platforms.md)\n"
                 "  --json       all of it as JSON\n"
                 "  --version    the library's version (and the header's, if they differ)\n");
    return status;
}

int main(int argc, char **argv)
{
    if (argc > 2) return usage(stderr, 2);
    const char *mode = argc == 2 ? argv[1] : "";
    if (strcmp(mode, "") == 0) {
        print_table(true);
        print_machine();
    } else if (strcmp(mode, "--static") == 0) {
        print_table(false);
    } else if (strcmp(mode, "--platforms") == 0) {
        print_platforms();
    } else if (strcmp(mode, "--json") == 0) {
        print_json();
    } else if (strcmp(mode, "--version") == 0) {
        printf("eddy-caps (eddy) %s\n", eddy_version_string());
        if (eddy_version() != EDDY_VERSION_HEX)
            printf("built against the eddy %d.%d.%d header\n", EDDY_VERSION_MAJOR,
                   EDDY_VERSION_MINOR, EDDY_VERSION_PATCH);
    } else if (strcmp(mode, "--help") == 0 || strcmp(mode, "-h") == 0) {
        return usage(stdout, 0);
    } else {
        return usage(stderr, 2);
    }
    return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
}
