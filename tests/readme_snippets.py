#!/usr/bin/env python3
"""The C++ code blocks of a Markdown file, as files the build compiles.

  readme_snippets.py list FILE          one line per ```cpp block: its kind
                                        ("coroutines" when it uses co_await,
                                        "asio" when it includes
                                        <dtlspp/asio.hpp>, else "core")
  readme_snippets.py extract FILE DIR   writes DIR/readme_snippet_N.cpp

Every ```cpp block must be a whole program (it defines main), so that what
a reader pastes compiles; a block that does not is an error here.
"""
import pathlib
import re
import sys


def blocks(path):
    text = pathlib.Path(path).read_text(encoding="utf-8")
    found = re.findall(r"^```cpp[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
    for number, code in enumerate(found, 1):
        if not re.search(r"\bint\s+main\s*\(", code):
            sys.exit(f"{path}: C++ block {number} defines no main(): every ```cpp block "
                     "must compile as pasted")
    return found


def kind(code):
    if "co_await" in code:
        return "coroutines"
    return "asio" if "<dtlspp/asio.hpp>" in code else "core"


def main(argv):
    if len(argv) == 3 and argv[1] == "list":
        for code in blocks(argv[2]):
            print(kind(code))
        return 0
    if len(argv) == 4 and argv[1] == "extract":
        out = pathlib.Path(argv[3])
        for number, code in enumerate(blocks(argv[2]), 1):
            source = f"// From {pathlib.Path(argv[2]).name}, C++ block {number}.\n" + code
            (out / f"readme_snippet_{number}.cpp").write_text(source, encoding="utf-8")
        return 0
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
