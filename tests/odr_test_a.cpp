// Two translation units include every header: a non-inline definition in a
// header would break this link (one definition rule).
#include "backends.hpp"
#include <dtlspp/dtlspp.hpp>

int odr_other();

int main() { return odr_other() == 42 ? 0 : 1; }
