"""python -m micro: the same as the micro console script."""

import sys

from micro.cli import main

sys.exit(main())
