"""Every adapter method x every backbone family of docs/backbones.md, each backbone built as a user builds it
(`create_backbone(name)`, default options, random weights): a method either applies and trains (a forward
and backward pass reach its own parameters only) or is refused with one ConfigError naming alternatives.
The adapter table in docs/backbones.md is this matrix; `test_docs_table_is_the_matrix` prints the table to
paste when they differ.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path

import pytest
import torch
from adapter_cases import _hf_folder

from umgkit.adapters import apply_adapter, parameter_report
from umgkit.backbones import create_backbone
from umgkit.errors import ConfigError

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parents[2] / "docs" / "backbones.md"
START, END = "<!-- adapter-support:start -->", "<!-- adapter-support:end -->"
METHODS = ["lora", "dora", "loha", "lokr", "lora_qv", "clip_lora", "adaptformer", "adapter", "vpt", "ssf",
           "bitfit", "frozen", "full"]

# (family as the docs name it, real backbone names of the family, smallest ones where a family has many).
# "hf:clip" / "hf:siglip" stand for a transformers checkpoint folder written by save_tiny_hf.
FAMILIES = [
    ("token ViT with class token", ["umg:tiny", "openclip:ViT-S-32", "hf:clip"]),
    ("EVA02 (rotary positions)", ["openclip:EVA02-B-16", "timm:eva02_tiny_patch14_224"]),
    ("attention-pooled (MAP) ViT", ["openclip:ViT-B-16-SigLIP", "hf:siglip"]),
    ("vision-only ViT", ["timm:vit_tiny_patch16_224", "timm:deit_tiny_patch16_224",
                         "timm:vit_small_patch14_dinov2"]),
    ("hierarchical, attention", ["timm:swin_tiny_patch4_window7_224"]),
    ("hierarchical, convolution + MLP", ["timm:convnext_tiny", "openclip:convnext_tiny"]),
    ("hierarchical, convolution only", ["timm:resnet18", "openclip:RN50"]),
]


def _build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name in ("hf:clip", "hf:siglip"):
        name = "hf:" + _hf_folder(name[3:])
    model = create_backbone(name).eval()
    with torch.no_grad():  # timm zero-initialises each residual branch's last BatchNorm (zero_init_last),
        for m in model.modules():  # which would cut the branch's convolutions off the gradient
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(1.0)
    return model


def _outcome(model: torch.nn.Module, method: str) -> str:
    """"yes" when ``method`` applies and trains exactly its own parameters, else the refusal message."""
    try:
        adapter = apply_adapter(model, method)
    except ConfigError as err:
        return str(err)
    owned = {n for n, _ in model.named_parameters() if adapter.owns(n)}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == owned
    assert parameter_report(model)["trainable"] == sum(p.numel() for n, p in model.named_parameters()
                                                       if n in owned)
    if method == "frozen":
        assert not owned
        return "yes"
    assert owned, method
    g = torch.Generator().manual_seed(2)
    if method not in ("bitfit", "full"):  # their parameters are the frozen model's own: leave them as built
        with torch.no_grad():  # zero-initialised factors (LoRA B, bottleneck up) would hide others' grads
            for n, p in model.named_parameters():
                if n in owned:
                    p.add_(0.01 * torch.randn(p.shape, generator=g))
    model.dense(torch.randn(1, 3, 64, 64, generator=g)).square().mean().backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads and grads <= owned, sorted(grads - owned)[:5]
    return "yes"


def _copy_sharing_weights(plain: torch.nn.Module) -> torch.nn.Module:
    """A copy of the module tree that shares the frozen tensors (adapters wrap modules, never write the
    frozen weights when applied), so a row costs one build, not one per method."""
    memo = {id(t): t for t in (*plain.parameters(), *plain.buffers())}
    return copy.deepcopy(plain, memo)


@functools.cache
def _row(name: str) -> dict[str, str]:
    plain = _build(name)
    row = {}
    for method in METHODS:
        row[method] = _outcome(_copy_sharing_weights(plain), method)
        for p in plain.parameters():
            p.grad = None
    return row


@functools.cache
def _family_row(family: str) -> dict[str, bool]:
    names = dict(FAMILIES)[family]
    rows = {name: _row(name) for name in names}
    applies = {m: rows[names[0]][m] == "yes" for m in METHODS}
    for name, row in rows.items():
        differ = [m for m in METHODS if (row[m] == "yes") != applies[m]]
        assert not differ, f"{name} and {names[0]} disagree on {differ}: " + str(
            {m: (row[m], rows[names[0]][m]) for m in differ})
    return applies


def render_table() -> str:
    head = "| family | built in the test | " + " | ".join(f"`{m}`" for m in METHODS) + " |"
    lines = [head, "| --- | --- | " + " | ".join("---" for _ in METHODS) + " |"]
    for family, names in FAMILIES:
        applies = _family_row(family)
        cells = ["yes" if applies[m] else "–" for m in METHODS]
        lines.append(f"| {family} | " + ", ".join(f"`{n}`" for n in names) + " | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@pytest.mark.parametrize("family", [f for f, _ in FAMILIES])
def test_each_family_applies_or_refuses_every_method_clearly(family):
    applies = _family_row(family)
    for name in dict(FAMILIES)[family]:
        for method, outcome in _row(name).items():
            if not applies[method]:  # refused: one message that points elsewhere
                assert re.search(r"\b[Uu]se\b", outcome), (name, method, outcome)


def test_docs_table_is_the_matrix():
    text = DOC.read_text()
    documented = text[text.index(START) + len(START):text.index(END)].strip()
    expected = render_table()
    assert documented == expected, f"docs/backbones.md's adapter table differs; paste:\n{expected}"


def test_lora_applies_to_the_backbones_users_name():
    """The issue's four backbones take LoRA with default options (the issue's acceptance)."""
    for name in ("openclip:EVA02-B-16", "openclip:RN50", "timm:resnet18", "timm:convnext_tiny"):
        assert _row(name)["lora"] == "yes", (name, _row(name)["lora"])
