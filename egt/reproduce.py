"""``python -m egt.reproduce``: the protocol campaign's runner, which lives in :mod:`egt.campaign.reproduce`
(this name stays the documented command)."""

from __future__ import annotations

import sys

from egt.campaign.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
