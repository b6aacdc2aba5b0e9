"""Is a framework installed? Answered from the import system's finders, without importing it.

``is_mmseg_models_available`` is the exception: mmseg's models (decode heads, segmentors) import
``mmcv.ops``, which only a compiled mmcv provides, and finding that out needs the import itself; it is
called only where the answer matters (tests, the mmseg builder's error message).
"""

from __future__ import annotations

import importlib
import importlib.util

__all__ = ["D2_INSTALL_HINT", "MMSEG_INSTALL_HINT", "is_detectron2_available", "is_mmseg_available",
           "is_mmseg_models_available", "require"]

D2_INSTALL_HINT = (
    "detectron2 is not installed (it is not on PyPI). Build it from source against your torch: "
    "`git clone https://github.com/facebookresearch/detectron2 && "
    "pip install --no-build-isolation ./detectron2` (see docs/integrations.md).")
MMSEG_INSTALL_HINT = (
    "mmsegmentation is not installed. It needs mmcv < 2.2.0 with compiled ops, which builds only against "
    "an older torch: `tools/mmseg_env.sh ENV_DIR` builds that environment (torch 2.5.1, mmcv 2.1.0, "
    "mmseg 1.2.2, umgkit); see docs/integrations.md.")


def _found(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def is_detectron2_available() -> bool:
    return _found("detectron2")


def is_mmseg_available() -> bool:
    """mmsegmentation and mmengine are installed (enough for the registry and the backbone)."""
    return _found("mmseg") and _found("mmengine")


def is_mmseg_models_available() -> tuple[bool, str]:
    """``(True, "")`` when ``mmseg.models`` imports (needs mmcv's compiled ops), else ``(False, why)``."""
    if not is_mmseg_available():
        return False, MMSEG_INSTALL_HINT
    try:
        importlib.import_module("mmseg.models")
    except Exception as err:  # ImportError / ModuleNotFoundError for mmcv._ext, OSError for a bad build
        return False, f"mmseg.models does not import ({type(err).__name__}: {err}); it needs mmcv with " \
                      "compiled ops (mmcv-lite is not enough)."
    return True, ""


def require(framework: str) -> None:
    """Raise ImportError with install instructions when ``framework`` ("detectron2"/"mmseg") is missing."""
    if framework == "detectron2" and not is_detectron2_available():
        raise ImportError(D2_INSTALL_HINT)
    if framework == "mmseg" and not is_mmseg_available():
        raise ImportError(MMSEG_INSTALL_HINT)
