"""``python -m aero.cli``: the same as the ``aero`` command."""

import sys

from aero.cli import main

sys.exit(main())
