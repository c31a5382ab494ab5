"""Preload luathrottle's Lua scripts on a server: ``luathrottle scripts``.

Usage: python scripts/preload_lua.py load --url redis://host:6379/0
       python scripts/preload_lua.py check --url redis://host:6379/0
       python scripts/preload_lua.py list
"""

import sys

from luathrottle.cli import main

if __name__ == "__main__":
    sys.exit(main(["scripts", *sys.argv[1:]]))
