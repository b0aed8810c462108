"""``python -m viraltrend``: the same as the ``viraltrend`` command."""

from __future__ import annotations

from viraltrend.cli import main

raise SystemExit(main())
