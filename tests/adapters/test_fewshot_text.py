"""The text-side few-shot methods (coop, cocoop, clip_lora) and the ``clip`` head, on every family with a
text tower: the prompt-token hook, exact parameter counts, zero-shot equality before training, gradients
through the frozen tower, class-name handling."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from umgkit.adapters import parameter_report
from umgkit.config import ConfigError, config_from_dict
from umgkit.errors import ModelError
from umgkit.models import build_model

sys.path.insert(0, str(Path(__file__).parents[1] / "backbones"))
from backbone_cases import JOINT, build, shared  # noqa: E402

NAMES = ["red circle", "square", "blue_triangle"]


def _model(adapter: str, options: dict | None = None, head: str = "clip", head_options: dict | None = None,
           backbone: str = "umg:tiny", names: list[str] = NAMES):
    cfg = config_from_dict({"task": "classification", "data": {"image_size": 64},
                            "model": {"backbone": backbone, "adapter": adapter,
                                      "adapter_options": options or {},
                                      "head": head, "head_options": head_options or {}}})
    return build_model(cfg, names)


@pytest.mark.parametrize("key", JOINT)
def test_context_tokens_equal_the_words_they_start_from(key):
    """The hook puts learned embeddings where the placeholders are: with the words' own embeddings the
    tower's output is that of the plain text, and gradients reach the context."""
    backbone = shared(key)
    words = backbone.text_word_embeddings("a photo of a")
    assert words.shape[0] == 4 and words.shape[1] == backbone.text_token_embedding.weight.shape[1]
    texts = ["red circle.", "square."]
    plain = backbone.encode_text(["a photo of a red circle.", "a photo of a square."])
    context = words.clone().requires_grad_(True)
    prompted = backbone.encode_text_with_context(texts, context)
    torch.testing.assert_close(prompted, plain, atol=1e-6, rtol=0)
    prompted.sum().backward()
    assert context.grad is not None and context.grad.abs().sum() > 0
    per_text = words.unsqueeze(0).repeat(2, 1, 1)  # (N, M, W): one context per text, same result
    torch.testing.assert_close(backbone.encode_text_with_context(texts, per_text).detach(), plain, atol=1e-6,
                               rtol=0)


def test_vision_only_backbone_has_no_prompt_tokens():
    with pytest.raises(ConfigError, match="text tower"):
        _model("coop", backbone="timm:vit_tiny_patch16_224")


@pytest.mark.parametrize("backbone", ["umg:tiny", "openclip:umgkit-tiny-openclip"])
def test_coop_from_template_words_equals_zero_shot(backbone):
    """Issue 29: CoOp with its context initialised from "a photo of a" and no training equals zero-shot CLIP
    on the template "a photo of a {}." (1e-5); built as users build it, from a config."""
    zero = _model("frozen", backbone=backbone).eval()
    coop = _model("coop", {"ctx_init": "a photo of a"}, backbone=backbone).eval()
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(coop(images=images), zero(images=images), atol=1e-5, rtol=0)


@pytest.mark.parametrize("key", JOINT)
def test_coop_prompt_head_equals_template_head_on_every_family(key):
    from umgkit.adapters import apply_adapter
    from umgkit.heads.clip import CLIPHead

    backbone = build(key)
    zero = CLIPHead(backbone=backbone, class_names=NAMES, templates=("a photo of a {}.",), logit_scale=4.6)
    feats = torch.randn(2, backbone.embed_dim, generator=torch.Generator().manual_seed(1))
    feats = F.normalize(feats, dim=-1)
    with torch.no_grad():
        expected = zero.eval()(feats)
    prompted = build(key)
    apply_adapter(prompted, "coop", ctx_init="a photo of a")
    head = CLIPHead(backbone=prompted, class_names=NAMES, templates=("ignored {}",), logit_scale=4.6)
    with torch.no_grad():
        torch.testing.assert_close(head.eval()(feats), expected, atol=1e-5, rtol=0)


def test_parameter_counts_follow_the_formulas():
    bb = _model("frozen").backbone
    width, dim = bb.text.token_embedding.weight.shape[1], bb.embed_dim
    assert parameter_report(_model("coop").backbone)["trainable"] == 16 * width
    assert parameter_report(_model("coop", {"n_ctx": 4}).backbone)["trainable"] == 4 * width
    assert parameter_report(_model("coop", {"class_specific": True}).backbone)["trainable"] == 3 * 16 * width
    hidden = dim // 16
    cocoop = 4 * width + dim * hidden + hidden + hidden * width + width  # ctx "a photo of a" + meta-net
    assert parameter_report(_model("cocoop").backbone)["trainable"] == cocoop
    vision, text = bb.width, bb.text.blocks[0].attn.qkv.in_features
    layers = len(bb.blocks), len(bb.text.blocks)
    assert parameter_report(_model("clip_lora").backbone)["trainable"] == \
        3 * 2 * 2 * (layers[0] * vision + layers[1] * text)  # q, k, v x (A + B) x rank 2 x width


@pytest.mark.slow
def test_vit_b16_counts_of_the_issue():
    """CoOp 16 tokens at width 512 = 8,192; CLIP-LoRA r=2 on q, k, v of both towers = 184,320."""
    coop = _model("coop", backbone="openclip:ViT-B-16")
    assert parameter_report(coop)["trainable"] == 8_192
    lora = _model("clip_lora", backbone="openclip:ViT-B-16")
    assert parameter_report(lora)["trainable"] == 184_320
    wrapped = [n for n, _ in lora.named_modules() if n.endswith("attn") and "LoraQV" in
               type(lora.get_submodule(n)).__name__]
    assert len(wrapped) == 24  # every block of both towers


def test_clip_lora_positions_choose_depth_ranges():
    from umgkit.adapters.clip_lora import POSITIONS

    for position in POSITIONS:
        model = _model("clip_lora", {"position": position})
        trained = [n for n, p in model.backbone.named_parameters() if p.requires_grad]
        adapted = sorted({n.split(".attn")[0] for n in trained})
        depth = len(model.backbone.blocks)
        start, end = POSITIONS[position]
        want = [i for i in range(depth) if start * depth <= i < end * depth]
        assert [int(n.rsplit(".", 1)[1]) for n in adapted if n.startswith("visual.")] == want, position
    with pytest.raises(ConfigError, match="position"):
        _model("clip_lora", {"position": "top"})


def test_prompt_methods_need_the_clip_head():
    with pytest.raises(ConfigError, match="model.head=clip"):
        _model("coop", head="linear")
    with pytest.raises(ConfigError, match="n_ctx=8"):
        _model("coop", {"ctx_init": "a photo of a", "n_ctx": 8})


def test_new_class_names_where_the_method_allows_them():
    images = torch.randn(2, 3, 64, 64)
    for adapter, options in (("coop", {}), ("cocoop", {}), ("clip_lora", {}), ("frozen", {})):
        model = _model(adapter, options).eval()
        model.set_class_names(["star", "ring", "cross", "hexagon"])
        with torch.no_grad():
            assert model(images=images).shape == (2, 4), adapter
    csc = _model("coop", {"class_specific": True}).eval()
    csc.set_class_names(list(NAMES))  # the same names: nothing changes
    with pytest.raises(ModelError, match="one context per class"):
        csc.set_class_names(["star", "ring", "cross"])


def test_cocoop_conditions_each_image_and_trains_its_meta_net():
    model = _model("cocoop").train()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    logits = model(images=images)
    loss = F.cross_entropy(logits, torch.tensor([0, 2]))
    loss.backward()
    trained = {n for n, p in model.named_parameters() if p.requires_grad and p.grad is not None
               and p.grad.abs().sum() > 0}
    assert trained == {n for n, p in model.named_parameters() if p.requires_grad}
    # the class features of one image do not depend on the other images of the batch
    model.eval()
    with torch.no_grad():
        both = model(images=images)
        first = model(images=images[:1])
    torch.testing.assert_close(both[:1], first, atol=1e-5, rtol=0)


def test_coop_steps_lower_the_loss_and_only_move_the_context():
    model = _model("coop").train()
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    labels = torch.tensor([0, 1, 2, 0])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = F.cross_entropy(model(images=images), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved == {"backbone.text_prompt.coop_ctx"}
