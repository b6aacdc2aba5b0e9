"""Parameter-efficient tuning (PET) methods for frozen backbones: apply, count, save, load, merge.

Every method is registered in `umgkit.registry.ADAPTERS` under its name (``lora``, ``dora``, ``loha``,
``lokr``, ``lora_qv``, ``adaptformer``, ``adapter``, ``vpt``, ``bitfit``, ``ssf``, ``frozen``, ``full``, and
the CLIP few-shot family ``coop``, ``cocoop``, ``clip_lora``)
and works on timm / umg ViTs, open_clip and transformers towers, ConvNeXt and ResNet stages, found
structurally (see ``_structure``); each method's default targets follow each block's layout (``_layout``).

Example:
    >>> import timm
    >>> from umgkit.adapters import apply_adapter, parameter_report
    >>> vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=2)
    >>> adapter = apply_adapter(vit, "adaptformer", bottleneck=8)
    >>> parameter_report(vit)["trainable"]  # 2 * (192*8 + 8 + 8*192 + 192)
    6544
"""

from ._base import Adapter
from .api import apply_adapter, merge_adapter, parameter_report
from .baselines import FrozenAdapter, FullAdapter
from .bitfit import BitFitAdapter
from .bottleneck import AdaptFormerAdapter, SequentialAdapter
from .checkpoint import load_adapter, save_adapter
from .clip_lora import CLIPLoraAdapter
from .cocoop import CoCoOpAdapter
from .coop import CoOpAdapter
from .lora_qv import LoraQVAdapter
from .peft_family import DoraAdapter, LoHaAdapter, LoKrAdapter, LoraAdapter
from .ssf import SSFAdapter
from .vpt import VPTAdapter

__all__ = [
    "Adapter",
    "AdaptFormerAdapter",
    "BitFitAdapter",
    "CLIPLoraAdapter",
    "CoCoOpAdapter",
    "CoOpAdapter",
    "DoraAdapter",
    "FrozenAdapter",
    "FullAdapter",
    "LoHaAdapter",
    "LoKrAdapter",
    "LoraAdapter",
    "LoraQVAdapter",
    "SSFAdapter",
    "SequentialAdapter",
    "VPTAdapter",
    "apply_adapter",
    "load_adapter",
    "merge_adapter",
    "parameter_report",
    "save_adapter",
]
