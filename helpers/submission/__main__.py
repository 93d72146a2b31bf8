"""``python -m helpers.submission ...``: see :mod:`helpers.submission.cli`."""

import sys

from .cli import main

sys.exit(main())
