// doctest's main for the host runner's tests.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "../test_core/doctest_compat.h"
