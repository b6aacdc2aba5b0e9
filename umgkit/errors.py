"""The error family for user mistakes: the CLI prints one of these as one message and exits 2.

Anything else that escapes is a bug in umgkit and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["UmgkitError", "ModelError"]


class UmgkitError(Exception):
    """A mistake the user can fix (config, data, weights, model folder, CLI input); the message says how."""


class ModelError(UmgkitError, ValueError):
    """A model folder, run or checkpoint that cannot be loaded as asked, or a class list that does not fit."""
