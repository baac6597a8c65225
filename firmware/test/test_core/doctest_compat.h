// doctest from Debian (doctest-dev: <doctest/doctest.h>) or from PlatformIO's test runner
// (`test_framework = doctest`: <doctest.h>), whichever this build has.
#pragma once

#if __has_include(<doctest/doctest.h>)
#include <doctest/doctest.h>
#else
#include <doctest.h>
#endif
