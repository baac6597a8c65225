// doctest's main for the core's tests.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "doctest_compat.h"
