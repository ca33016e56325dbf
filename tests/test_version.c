/* SPDX-License-Identifier: MIT */
/* The version API: the header's macros, the library's answers, the release
 * number configure was given, and eddy-caps --version all agree. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "eddy.h"

Test(version, library_matches_header)
{
    cr_assert(eq(u32, eddy_version(), EDDY_VERSION_HEX));
    char expected[32];
    snprintf(expected, sizeof expected, "%d.%d.%d", EDDY_VERSION_MAJOR, EDDY_VERSION_MINOR,
             EDDY_VERSION_PATCH);
    cr_assert(eq(str, (char *)eddy_version_string(), expected));
}

Test(version, hex_orders_releases)
{
    cr_assert(eq(u32, EDDY_VERSION_HEX >> 16, EDDY_VERSION_MAJOR));
    cr_assert(eq(u32, (EDDY_VERSION_HEX >> 8) & 0xff, EDDY_VERSION_MINOR));
    cr_assert(eq(u32, EDDY_VERSION_HEX & 0xff, EDDY_VERSION_PATCH));
}

/* configure.ac takes its release number from the header: the two never drift. */
Test(version, configure_release_number_is_the_headers)
{
    cr_assert(eq(str, (char *)eddy_version_string(), EDDY_TEST_PACKAGE_VERSION));
}

#ifndef _WIN32
Test(version, eddy_caps_prints_it)
{
    FILE *tool = popen(EDDY_TEST_BUILDDIR "/tools/eddy-caps --version", "r");
    cr_assert(tool != NULL);
    char out[256] = {0};
    size_t n = fread(out, 1, sizeof out - 1, tool);
    out[n] = '\0';
    cr_assert(eq(int, pclose(tool), 0));
    char expected[64];
    snprintf(expected, sizeof expected, "eddy-caps (eddy) %s\n", eddy_version_string());
    cr_assert(eq(str, out, expected));
}
#endif
