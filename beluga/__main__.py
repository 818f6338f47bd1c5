"""`python -m beluga ...`: the operator's command, the same as the `beluga` console script."""

import sys

from beluga.cli import main

sys.exit(main())
