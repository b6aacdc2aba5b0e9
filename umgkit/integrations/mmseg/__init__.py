"""MMSegmentation bridge: umgkit's frozen backbone + adapter as an mmseg backbone.

Importing this package imports ``mmseg.registry`` / ``mmengine`` (ImportError with install instructions
when they are missing) and registers ``UMGKitBackbone`` in mmseg's ``MODELS`` registry, so an mmseg
config selects it with ``backbone=dict(type="UMGKitBackbone", backbone="umg:base16", ...)`` once
``custom_imports=dict(imports=["umgkit.integrations.mmseg"])`` is in the config.
Registration needs only mmengine + mmseg (mmcv-lite suffices); building a full segmentor (decode
heads) needs ``mmseg.models``, which needs mmcv with compiled ops.
"""

from .._availability import require

require("mmseg")

from .backbone import UMGKitBackbone  # noqa: E402  (registration)
from .export import export_adapter, export_adapter_from_checkpoint  # noqa: E402

__all__ = ["UMGKitBackbone", "export_adapter", "export_adapter_from_checkpoint"]
