// Boost.Test built from Boost's headers alone, for hosts without its
// library (the Windows cross build: Debian ships no mingw-w64 Boost).
// <boost/test/included/unit_test.hpp> holds the framework's whole
// implementation and a main(); with no BOOST_TEST_MODULE here, main() calls
// the init_unit_test_suite() that each test file defines through its own
// BOOST_TEST_MODULE, exactly as with the static library.
#include <boost/test/included/unit_test.hpp>
