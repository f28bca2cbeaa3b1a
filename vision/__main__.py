"""``python -m vision``: see ``vision.cli``."""

import sys

from vision.cli import main

sys.exit(main())
