"""CLIP-LoRA (Zanella & Ben Ayed, 2024): low-rank updates of the q, k and v projections in both towers
of a CLIP model, trained with the ``clip`` head (class text features re-encoded through the adapted text
tower at every step).

It is `lora_qv` with CLIP-LoRA's defaults: ``rank=2``, ``alpha=1``, parts q, k, v, ``tower="all"``, and a
``position`` option choosing a depth range of every block list (``all``, ``bottom`` / ``mid`` / ``up``:
the first / middle / last third, ``half-bottom`` / ``half-up``: the first / last half). Parameters per
adapted block: ``3 * 2 * rank * C`` (ViT-B/16, rank 2, all layers: 12 x 3 x 4 x 768 + 12 x 3 x 4 x 512 =
184,320). The paper applies dropout 0.25 to the LoRA input; open_clip's attention (an
nn.MultiheadAttention) and separate projections take the update as a weight, where input dropout does not
exist, so the default here is 0 (a fused qkv Linear, as in umg and timm, accepts dropout > 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from torch import nn

from ..errors import ConfigError
from ..registry import ADAPTERS
from ._structure import select_blocks
from .lora_qv import LoraQVAdapter, LoraQVConfig

__all__ = ["CLIPLoraAdapter", "CLIPLoraConfig", "POSITIONS"]

_THIRD, _HALF = Fraction(1, 3), Fraction(1, 2)
POSITIONS = {  # fraction of the depth: [start, end), exact
    "all": (Fraction(0), Fraction(1)), "bottom": (Fraction(0), _THIRD), "mid": (_THIRD, 2 * _THIRD),
    "up": (2 * _THIRD, Fraction(1)), "half-bottom": (Fraction(0), _HALF), "half-up": (_HALF, Fraction(1)),
}


@dataclass
class CLIPLoraConfig(LoraQVConfig):
    rank: int = 2
    alpha: float = 1.0
    parts: tuple[str, ...] = ("q", "k", "v")
    tower: str = "all"
    position: str = "all"  # depth range of each block list: all, bottom, mid, up, half-bottom, half-up

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.position not in POSITIONS:
            raise ConfigError(f"Adapter 'clip_lora': position={self.position!r}; choose one of "
                              f"{', '.join(POSITIONS)}.", key="model.adapter_options.position")
        if self.position != "all" and self.layers is not None:
            raise ConfigError("Adapter 'clip_lora': give either position or layers, not both.",
                              key="model.adapter_options.layers")

    @property
    def method_name(self) -> str:
        return "clip_lora"


@ADAPTERS.register("clip_lora")
class CLIPLoraAdapter(LoraQVAdapter):
    """LoRA on q, k, v of both towers, CLIP-LoRA's defaults (see the module docstring)."""

    method = "clip_lora"
    config_cls = CLIPLoraConfig

    def _blocks(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        c = self.config
        start, end = POSITIONS[c.position]
        chosen = []
        for path, block, blocks in select_blocks(model, c.tower, c.layers):
            index = int(path.rsplit(".", 1)[-1])
            if c.layers is not None or start * blocks.length <= index < end * blocks.length:
                chosen.append((path, block))
        return chosen
