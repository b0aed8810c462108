"""viraltrend: spot products going viral in engagement events and promote them onto a board."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
