"""What each layer of one block does, read from the block itself, so every method's default targets follow
the block's real layout instead of a list of names per model.

One family of blocks comes in several layouts: timm's EVA builds a fused ``attn.qkv`` in some variants
and separate ``attn.q_proj / k_proj / v_proj`` in others (open_clip's EVA02-CLIP towers), its MLP may be a
SwiGLU (``fc1_g, fc1_x, fc2``) or a plain ``fc1, fc2``; open_clip keeps the projections inside an
``nn.MultiheadAttention``; transformers names them ``self_attn.{q,k,v,out}_proj``; ResNet blocks have
convolutions only. `block_layout` records which block-relative path plays which role:

- ``qkv``: a fused ``Linear`` ordered q|k|v (``Linear(C, 3C)`` but for unusual head widths); or ``q``,
  ``k``, ``v``: separate Linear projections; or ``mha``: an ``nn.MultiheadAttention`` (whose forward
  reads ``out_proj.weight`` directly, so its inner layers cannot be wrapped on their own).
- ``attn_out``: the attention's output projection, when it is called as a module.
- ``mlp``: the MLP's Linear (or 1x1 conv) layers in order; ``norms``: the block's own affine LayerNorms;
  ``convs``: the block's own ``nn.Conv2d`` layers (ResNet ``conv1..3``, ConvNeXt ``conv_dw``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

__all__ = ["BlockLayout", "block_layout", "has_attention_projections", "unwrapped"]

_ATTENTION_NAMES = ("attn", "self_attn")
_SEPARATE = (("q_proj", "k_proj", "v_proj"), ("q", "k", "v"))  # timm / transformers, then plain names
_OUT_NAMES = ("proj", "out_proj", "o_proj")


@dataclass(frozen=True)
class BlockLayout:
    """Block-relative paths of the layers that play each role in one block (see the module docstring)."""

    attention: str | None = None  # the attention module ("attn", "self_attn"); None: no attention
    mha: bool = False  # the attention is an nn.MultiheadAttention
    qkv: str | None = None  # fused Linear, output rows q|k|v
    q: str | None = None
    k: str | None = None
    v: str | None = None
    attn_out: str | None = None  # output projection called as a module (not inside an MHA)
    mlp: tuple[str, ...] = ()
    norms: tuple[str, ...] = ()
    convs: tuple[str, ...] = ()

    @property
    def attention_projections(self) -> tuple[str, ...]:
        """Every Linear projection of the attention a wrapper may replace (empty for an MHA)."""
        inputs = (self.qkv,) if self.qkv else tuple(p for p in (self.q, self.k, self.v) if p)
        return inputs + ((self.attn_out,) if self.attn_out else ())

    @property
    def separate_qv(self) -> bool:
        return self.q is not None and self.v is not None


def unwrapped(module: nn.Module) -> nn.Module:
    """The innermost layer under adapter wrappers (umgkit's and peft's both keep it as ``base_layer``)."""
    while isinstance(getattr(module, "base_layer", None), nn.Module):
        module = module.base_layer
    return module


def _child(parent: nn.Module, name: str) -> nn.Module | None:
    value = getattr(parent, name, None)  # timm's EVA sets ``qkv = None`` when q/k/v are separate
    return unwrapped(value) if isinstance(value, nn.Module) else None


def _fused_qkv(attn: nn.Module) -> bool:
    qkv = _child(attn, "qkv")  # (3 * heads * head_dim) outputs, usually 3C
    return isinstance(qkv, nn.Linear) and qkv.out_features % 3 == 0


def _separate(attn: nn.Module) -> tuple[str, str, str] | None:
    for names in _SEPARATE:
        if all(isinstance(_child(attn, n), nn.Linear) for n in names):
            return names
    return None


def has_attention_projections(attn: nn.Module) -> bool:
    """Whether ``attn`` holds q, k and v projections umgkit can find (fused, separate or an MHA)."""
    attn = unwrapped(attn)
    return isinstance(attn, nn.MultiheadAttention) or _fused_qkv(attn) or _separate(attn) is not None


def _attention(block: nn.Module) -> dict:
    for name in _ATTENTION_NAMES:
        attn = _child(block, name)
        if attn is None or not has_attention_projections(attn):
            continue
        if isinstance(attn, nn.MultiheadAttention):
            return {"attention": name, "mha": True}
        found: dict = {"attention": name}
        if _fused_qkv(attn):
            found["qkv"] = f"{name}.qkv"
        else:
            q, k, v = _separate(attn)
            found.update(q=f"{name}.{q}", k=f"{name}.{k}", v=f"{name}.{v}")
        out = next((n for n in _OUT_NAMES if isinstance(_child(attn, n), nn.Linear)), None)
        found["attn_out"] = f"{name}.{out}" if out else None
        return found
    return {}


def _mlp(block: nn.Module) -> tuple[str, ...]:
    mlp = _child(block, "mlp")
    if mlp is None:
        return ()
    layers = []
    for name, module in mlp.named_children():
        module = unwrapped(module)
        if isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1)):
            layers.append(f"mlp.{name}")
    return tuple(layers)


def block_layout(block: nn.Module) -> BlockLayout:
    """Read ``block``'s layout (adapter wrappers are looked through)."""
    block = unwrapped(block)
    norms, convs = [], []
    for name, child in block.named_children():
        child = unwrapped(child)
        if isinstance(child, nn.LayerNorm) and child.weight is not None and child.bias is not None:
            norms.append(name)
        elif isinstance(child, nn.Conv2d):
            convs.append(name)
    return BlockLayout(**_attention(block), mlp=_mlp(block), norms=tuple(norms), convs=tuple(convs))
