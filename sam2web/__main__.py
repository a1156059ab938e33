"""``python -m sam2web``: the command line (see :mod:`sam2web.cli.main`)."""

import sys

from sam2web.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
