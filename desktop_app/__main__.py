"""``python -m desktop_app [SCAN] [--mask MASK] [--model M]``: same as the ``segloop`` command."""

from __future__ import annotations

import sys

from desktop_app.launcher import main

if __name__ == "__main__":
    sys.exit(main())
