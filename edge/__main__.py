"""python -m edge -> the edgepose CLI."""

import sys

from edge.cli import main

sys.exit(main())
