/* SPDX-License-Identifier: MIT */
/* The library's version, as the header it was built with states it. */
#include "eddy.h"

#define EDDY_STR_(x) #x
#define EDDY_STR(x)  EDDY_STR_(x)

EDDY_API unsigned eddy_version(void)
{
    return EDDY_VERSION_HEX;
}

EDDY_API const char *eddy_version_string(void)
{
    return EDDY_STR(EDDY_VERSION_MAJOR) "." EDDY_STR(EDDY_VERSION_MINOR) "." EDDY_STR(
        EDDY_VERSION_PATCH);
}
