"""`python -m edgelive …` is the `edgelive` command (workers are started this way)."""

import sys

from edgelive.cli import main

sys.exit(main())
