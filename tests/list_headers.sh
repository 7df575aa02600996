#!/bin/sh
# Prints every public header as it is included (dtlspp/...), skipping the
# backend of a stack that is not installed.
cd "$1" || exit 1
find dtlspp -name '*.hpp' | sort
