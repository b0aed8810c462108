"""The exception tree of viraltrend: one root, a small subclass per kind of problem.

Messages name the argument or key as the caller wrote it, then what was expected,
what was found, and what to do about it.
"""

from __future__ import annotations

__all__ = ["ConfigError", "InputError", "StreamError", "ViraltrendError", "CheckpointError"]


class ViraltrendError(Exception):
    """Root of every error viraltrend raises on purpose."""


class ConfigError(ViraltrendError):
    """A configuration file, override or flag is invalid; the message lists every problem."""


class InputError(ViraltrendError):
    """An input file or argument cannot be used at all (missing file, unknown format)."""


class StreamError(ViraltrendError):
    """The broker is unreachable, a topic is missing, or the stream cannot go on."""


class CheckpointError(ViraltrendError):
    """A checkpoint is missing, corrupt, or does not match the running configuration."""
