"""``python -m twin``: the same command line as the ``twin`` script (used to start child processes)."""

import sys

from twin.cli import main

sys.exit(main())
