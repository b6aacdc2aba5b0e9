"""Bridges to Detectron2 and MMSegmentation: umgkit's frozen backbone + adapter inside their trainers.

Nothing here imports either framework: ``umgkit.integrations.d2`` and ``umgkit.integrations.mmseg``
do, and only when a user imports them (or runs ``umgkit d2-train``). The helpers below say whether a
framework is installed without importing it, and how to install it when it is not.
"""

from ._availability import (
    D2_INSTALL_HINT,
    MMSEG_INSTALL_HINT,
    is_detectron2_available,
    is_mmseg_available,
    is_mmseg_models_available,
)

__all__ = [
    "D2_INSTALL_HINT",
    "MMSEG_INSTALL_HINT",
    "is_detectron2_available",
    "is_mmseg_available",
    "is_mmseg_models_available",
]
