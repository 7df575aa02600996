#include "backends.hpp"
#include <dtlspp/dtlspp.hpp>

int odr_other() { return static_cast<int>(dtlspp::error_category().name()[0] == 'd') * 42; }
