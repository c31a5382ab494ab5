"""``python -m luathrottle``: the ``luathrottle`` command."""

import sys

from luathrottle.cli import main

if __name__ == "__main__":
    sys.exit(main())
