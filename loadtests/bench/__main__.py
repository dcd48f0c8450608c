"""``python -m loadtests.bench``: see the package's docstring and ``--help``."""

import sys

from loadtests.bench.cli import main

sys.exit(main())
