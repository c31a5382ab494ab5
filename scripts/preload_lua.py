"""Preload luathrottle's Lua scripts on a server: ``luathrottle scripts``.

Usage: python scripts/preload_lua.py load --url redis://host:6379/0
       python scripts/preload_lua.py check --url redis://host:6379/0
       python scripts/preload_lua.py list

Exit status as ``luathrottle --help`` lists it: 0 success, 1 a script is
missing (check), 2 a usage or configuration error, printed in one line.
"""

import sys

from luathrottle.cli import main

if __name__ == "__main__":
    sys.exit(main(["scripts", *sys.argv[1:]]))
