"""Pretraining losses: hand-computed values on tiny tensors, masks, empty inputs, 2-process gather."""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from umgkit.losses import clip_loss
from umgkit.pretrain._pixel import pixel_assignment, region_support
from umgkit.pretrain._sparc import sparc_alignment_weights
from umgkit.pretrain.losses import (
    caption_hash_ids,
    image_text_loss,
    pixel_alignment_loss,
    region_tag_loss,
    region_text_loss,
    sparc_loss,
)

E = torch.eye(4)


def _unit(*v):
    return F.normalize(torch.tensor(v, dtype=torch.float32), dim=-1)


def _softplus(x):
    return math.log1p(math.exp(x))


# ---------------------------------------------------------------- image-text and region-text InfoNCE
def test_image_text_hand_value_and_symmetry():
    x = torch.eye(2)  # scale e^0 = 1: rows [1, 0] -> CE = log(1 + e^-1)
    expected = math.log1p(math.exp(-1))
    assert image_text_loss(x, x, 0.0, gather=False).item() == pytest.approx(expected, abs=1e-6)
    g = torch.Generator().manual_seed(0)
    a, b = (F.normalize(torch.randn(5, 3, generator=g), dim=1) for _ in range(2))
    assert image_text_loss(a, b, 1.0).item() == pytest.approx(image_text_loss(b, a, 1.0).item(), abs=1e-6)
    assert image_text_loss(a, b, 1.0).item() == pytest.approx(clip_loss(a, b, 1.0).item(), abs=1e-7)


def test_region_text_without_ids_is_clip_loss():
    g = torch.Generator().manual_seed(1)
    r, t = (F.normalize(torch.randn(6, 4, generator=g), dim=1) for _ in range(2))
    expected = clip_loss(r, t, 2.0, gather=False).item()
    assert region_text_loss(r, t, 2.0).item() == pytest.approx(expected, abs=1e-6)


def test_region_text_repeated_captions_are_positives():
    # regions e0, e1, e0 with captions "red circle", "blue square", "red circle" (texts e0, e1, e0), scale 1
    r = E[[0, 1, 0], :2]
    t = E[[0, 1, 0], :2]
    ids = caption_hash_ids(["a red circle", "a blue square", "a red circle"])
    assert ids[0] == ids[2] and ids[0] != ids[1]
    e = math.e
    # rows 0 and 2: logits [1, 0, 1]; each positive vs the negative column 1 only -> log(1 + e^-1);
    # row 1: logits [0, 1, 0], negatives columns 0 and 2 -> log(1 + 2/e); both directions alike (r = t)
    expected = (2 * math.log1p(1 / e) + math.log1p(2 / e)) / 3
    assert region_text_loss(r, t, 0.0, caption_ids=ids).item() == pytest.approx(expected, abs=1e-6)
    # without ids the duplicate caption is a false negative: a larger loss
    assert region_text_loss(r, t, 0.0).item() > expected + 0.1


def test_region_text_captions_true_of_a_region_are_its_positives():
    # R0 a red circle drawn as "a red circle" (text e0), R1 a blue circle drawn as "a circle" (text e1)
    r, t = E[[0, 1], :2], E[[0, 1], :2]
    ids = caption_hash_ids(["a red circle", "a circle"])
    describes = torch.stack([caption_hash_ids(["a red circle", "a circle"]),
                             caption_hash_ids(["a circle", "a blue circle"])])
    # r2t: R0 has both texts as positives and no negative -> 0; R1 vs negative "a red circle" -> log(1 + 1/e)
    # t2r: "a red circle" vs negative R1 -> log(1 + 1/e); "a circle" is true of both regions -> 0
    expected = 0.5 * math.log1p(1 / math.e)
    got = region_text_loss(r, t, 0.0, caption_ids=ids, describes=describes)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    # with equal-caption positives only, "a circle" would be a negative of the red circle: twice the loss
    assert region_text_loss(r, t, 0.0, caption_ids=ids).item() == pytest.approx(2 * expected, abs=1e-6)
    # a row that is only its own id is the equal-caption rule again
    alone = region_text_loss(r, t, 0.0, caption_ids=ids, describes=ids[:, None])
    assert alone.item() == pytest.approx(2 * expected, abs=1e-6)
    with pytest.raises(ValueError, match="own caption id"):
        region_text_loss(r, t, 0.0, caption_ids=ids, describes=describes[[1, 0]])
    with pytest.raises(ValueError, match="needs caption_ids"):
        region_text_loss(r, t, 0.0, describes=describes)


def test_region_text_zero_regions_gives_connected_zero():
    r = torch.zeros(0, 4, requires_grad=True)
    scale = torch.tensor(1.0, requires_grad=True)
    loss = region_text_loss(r, torch.zeros(0, 4), scale)
    loss.backward()
    assert loss.item() == 0.0 and r.grad is not None and scale.grad.item() == 0.0
    with pytest.raises(ValueError, match="caption_ids"):
        region_text_loss(torch.zeros(2, 4), torch.zeros(2, 4), 0.0, caption_ids=torch.zeros(3).long())


def test_region_tag_hand_value():
    region = E[:1, :2]  # e0
    tags = E[:2, :2]  # tag 0 = e0, tag 1 = e1
    targets = torch.tensor([[1, 0]])
    # scale 2, margin 0: logits [2, 0] -> mean(softplus(-2), softplus(0))
    value = region_tag_loss(region, tags, targets, math.log(2.0)).item()
    assert value == pytest.approx((_softplus(-2) + math.log(2)) / 2, abs=1e-6)
    # margin 0.5: logits [1, -1] -> both terms softplus(-1)
    value = region_tag_loss(region, tags, targets, math.log(2.0), margin=0.5).item()
    assert value == pytest.approx(_softplus(-1), abs=1e-6)
    with pytest.raises(ValueError, match="only 0 and 1"):
        region_tag_loss(region, tags, torch.tensor([[2, 0]]), 0.0)
    assert region_tag_loss(torch.zeros(0, 2), tags, torch.zeros(0, 2), 0.0).item() == 0.0


# ---------------------------------------------------------------- SPARC
def test_sparc_weights_threshold_and_l1_normalisation():
    token = E[None, :1]  # (1, 1, 4) = e0
    sims = [1.0, 0.5, 0.2, -1.0]
    patches = torch.stack([torch.tensor([s, math.sqrt(1 - s * s), 0.0, 0.0]) for s in sims])[None]
    # min-max over P: (s + 1) / 2 = [1, .75, .6, 0]; default threshold 1/4 drops only the last
    w = sparc_alignment_weights(patches, token)[0, 0]
    torch.testing.assert_close(w, torch.tensor([1.0, 0.75, 0.6, 0.0]) / 2.35)
    w = sparc_alignment_weights(patches, token, threshold=0.7)[0, 0]
    torch.testing.assert_close(w, torch.tensor([1.0, 0.75, 0.0, 0.0]) / 1.75)
    # a token equally similar to every patch gets uniform weights (no division by zero)
    flat = sparc_alignment_weights(patches, E[None, 3:4])[0, 0]
    torch.testing.assert_close(flat, torch.full((4,), 0.25))
    with pytest.raises(ValueError, match="threshold"):
        sparc_alignment_weights(patches, token, threshold=1.5)


def _sparc_case():
    """Patches e0, (e0+e1)/sqrt2, e1; tokens e0, e1; loss by hand at scale 1."""
    patches = torch.stack([_unit(1, 0), _unit(1, 1), _unit(0, 1)])[None]  # (1, 3, 2)
    tokens = torch.stack([_unit(1, 0), _unit(0, 1)])[None]  # (1, 2, 2)
    # token 0: sims [1, .7071, 0] all >= 1/3 -> weights [1, .7071, 0] / 1.7071 -> grouped ~ (1.5, .5)
    g = 1.5 / math.sqrt(2.5) - 0.5 / math.sqrt(2.5)  # logit gap between own token and the other one
    return patches, tokens, math.log1p(math.exp(-g))


def test_sparc_hand_value():
    patches, tokens, expected = _sparc_case()
    mask = torch.ones(1, 2, dtype=torch.bool)
    assert sparc_loss(patches, tokens, mask, 0.0).item() == pytest.approx(expected, abs=1e-6)
    # the default threshold is 1/P
    assert sparc_loss(patches, tokens, mask, 0.0, threshold=1 / 3).item() == pytest.approx(expected, abs=1e-6)
    # threshold 0.8 keeps only the best patch: grouped = tokens -> logits eye -> log(1 + e^-1)
    assert sparc_loss(patches, tokens, mask, 0.0, threshold=0.8).item() == pytest.approx(
        math.log1p(math.exp(-1)), abs=1e-6)


def test_sparc_padding_is_masked_everywhere():
    patches, tokens, expected = _sparc_case()
    junk = _unit(1, 0.3)[None, None]
    padded_tokens = torch.cat([tokens, junk], dim=1).requires_grad_(True)  # (1, 3, 2), last is padding
    mask = torch.tensor([[True, True, False]])
    # a second sample that is all padding is ignored in the mean
    tok2 = torch.cat([padded_tokens, padded_tokens.detach().flip(1)], dim=0)
    patch2 = patches.repeat(2, 1, 1)
    mask2 = torch.cat([mask, torch.zeros(1, 3, dtype=torch.bool)], dim=0)
    loss = sparc_loss(patch2, tok2, mask2, 0.0)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    loss.backward()
    assert padded_tokens.grad[0, 2].abs().sum().item() == 0.0 and padded_tokens.grad[0, :2].abs().sum() > 0


def test_sparc_mean_over_samples_then_tokens():
    g = torch.Generator().manual_seed(3)
    patches = F.normalize(torch.randn(2, 5, 4, generator=g), dim=-1)
    tokens = F.normalize(torch.randn(2, 4, 4, generator=g), dim=-1)
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    each = [sparc_loss(patches[i:i + 1], tokens[i:i + 1, :n], torch.ones(1, n, dtype=torch.bool), 1.0)
            for i, n in enumerate((4, 2))]
    assert sparc_loss(patches, tokens, mask, 1.0).item() == pytest.approx(sum(each).item() / 2, abs=1e-6)


def test_sparc_no_real_tokens_is_connected_zero():
    patches = torch.randn(2, 3, 4, requires_grad=True)
    loss = sparc_loss(patches, torch.randn(2, 2, 4), torch.zeros(2, 2, dtype=torch.bool), 0.0)
    loss.backward()
    assert loss.item() == 0.0 and patches.grad is not None


# ---------------------------------------------------------------- pixel alignment
def test_region_support_box_centres_tiny_box_and_mask_fallback():
    boxes = torch.tensor([[0.2, 0.2, 1.6, 1.0], [2.1, 1.1, 2.2, 1.2]])  # grid h=2, w=3
    support = region_support(boxes, None, 2, 2, 3, torch.device("cpu"))
    # pixel centres x 0.5/1.5/2.5, y 0.5/1.5: box 0 holds (0,0), (0,1); tiny box 1 keeps centre pixel (1,2)
    assert support.tolist() == [[True, True, False, False, False, False],
                                [False, False, False, False, False, True]]
    masks = torch.zeros(2, 2, 3, dtype=torch.bool)
    masks[0, 0, 1] = True  # inside box 0
    masks[1, 0, 0] = True  # outside box 1 -> falls back to the box
    support = region_support(boxes, masks, 2, 2, 3, torch.device("cpu"))
    assert support.tolist() == [[False, True, False, False, False, False],
                                [False, False, False, False, False, True]]


def test_pixel_assignment_argmax_within_support():
    # one image, 3 pixels; caption 0 prefers pixels 0 and 1, caption 1 prefers pixel 2
    sim = torch.tensor([[0.9, 0.5, 0.1], [0.2, 0.4, 0.8]])
    everywhere = torch.ones(2, 3, dtype=torch.bool)
    a = pixel_assignment(sim, everywhere, torch.tensor([0, 0]), 1)
    assert a.tolist() == [[True, True, False], [False, False, True]]
    # caption 1 may only claim pixel 0 where caption 0 wins: it keeps its best pixel inside its support
    restricted = torch.tensor([[True, True, True], [True, False, False]])
    a = pixel_assignment(sim, restricted, torch.tensor([0, 0]), 1)
    assert a.tolist() == [[True, True, True], [True, False, False]]
    # captions of different images never compete
    a = pixel_assignment(sim, everywhere, torch.tensor([0, 1]), 2)
    assert a.all()


def test_pixel_alignment_hand_value():
    # one image, grid 1 x 2: pixel 0 = e0, pixel 1 = e1; captions e0, e1; scale 1
    pixels = E[:2, :2].t().reshape(1, 2, 1, 2).clone().requires_grad_(True)  # (B=1, D=2, h=1, w=2)
    texts = E[:2, :2].clone().requires_grad_(True)
    index = torch.tensor([0, 0])
    term = math.log1p(math.exp(-1))  # every row: logits [1, 0]
    plain = pixel_alignment_loss(pixels, texts, index, 0.0, hard_negatives=False)
    assert plain.item() == pytest.approx(term, abs=1e-6)
    loss = pixel_alignment_loss(pixels, texts, index, 0.0)  # + per-pixel hard-negative term
    assert loss.item() == pytest.approx(2 * term, abs=1e-6)
    boxes = torch.tensor([[0.0, 0, 1, 1], [1, 0, 2, 1]])  # each caption boxed onto its own pixel
    boxed = pixel_alignment_loss(pixels, texts, index, 0.0, boxes=boxes)
    assert boxed.item() == pytest.approx(2 * term, abs=1e-6)
    loss.backward()
    assert pixels.grad.abs().sum() > 0 and texts.grad.abs().sum() > 0


def _pixel_loss_by_loops(pixels, texts, index, scale, support):
    """Plain-loop restatement of pixel_alignment_loss's docstring (distinct captions)."""
    nb, d, h, w = pixels.shape
    pix = pixels.reshape(nb, d, h * w)
    k = len(index)
    sim = [[float(texts[i] @ pix[index[i], :, q]) for q in range(h * w)] for i in range(k)]
    assigned = []
    for i in range(k):
        rivals = [j for j in range(k) if index[j] == index[i]]
        mine = [q for q in range(h * w) if support[i, q]
                and sim[i][q] >= max(sim[j][q] for j in rivals if support[j, q])]
        assigned.append(mine or [max((q for q in range(h * w) if support[i, q]), key=lambda q: sim[i][q])])
    z = torch.stack([F.normalize(pix[index[i], :, assigned[i]].mean(dim=1), dim=0) for i in range(k)])
    logits = scale * z @ texts.t()
    target = torch.arange(k)
    pooled = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
    hard = []
    for i in range(k):
        rivals = [j for j in range(k) if index[j] == index[i]]
        if len(rivals) > 1:
            row = torch.stack([scale * texts[rivals] @ pix[index[i], :, q] for q in assigned[i]])
            hard.append(F.cross_entropy(row, torch.full((len(assigned[i]),), rivals.index(i))))
    return pooled + torch.stack(hard).mean()


def test_pixel_alignment_matches_loop_reference():
    g = torch.Generator().manual_seed(5)
    pixels = F.normalize(torch.randn(3, 6, 4, 5, generator=g), dim=1)
    texts = F.normalize(torch.randn(6, 6, generator=g), dim=1)
    index = torch.tensor([2, 0, 2, 0, 1, 2])  # 2, 1 and 3 captions per image, interleaved
    boxes = torch.tensor([[0.0, 0, 3, 3], [1, 1, 5, 4], [2, 0, 5, 2],
                          [0, 0, 5, 4], [0, 2, 2, 4], [0, 0, 5, 4]])  # overlapping boxes in image 2
    support = region_support(boxes, None, 6, 4, 5, torch.device("cpu"))
    expected = _pixel_loss_by_loops(pixels, texts, index.tolist(), math.exp(1.0), support)
    got = pixel_alignment_loss(pixels, texts, index, 1.0, boxes=boxes)
    assert got.item() == pytest.approx(expected.item(), abs=1e-5)


def test_pixel_alignment_single_caption_images_have_no_hard_term():
    g = torch.Generator().manual_seed(4)
    pixels = F.normalize(torch.randn(2, 4, 3, 3, generator=g), dim=1)
    texts = F.normalize(torch.randn(2, 4, generator=g), dim=1)
    index = torch.tensor([0, 1])
    a = pixel_alignment_loss(pixels, texts, index, 1.0)
    b = pixel_alignment_loss(pixels, texts, index, 1.0, hard_negatives=False)
    assert a.item() == pytest.approx(b.item(), abs=1e-7)


def test_pixel_alignment_zero_regions_and_bad_index():
    pixels = torch.randn(1, 4, 2, 2, requires_grad=True)
    loss = pixel_alignment_loss(pixels, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 0.0)
    loss.backward()
    assert loss.item() == 0.0 and pixels.grad is not None
    with pytest.raises(ValueError, match="image_index"):
        pixel_alignment_loss(pixels, torch.zeros(1, 4), torch.tensor([3]), 0.0)


# ---------------------------------------------------------------- two processes
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_two_processes(tmp_path):
    out = tmp_path / "dist.json"
    script = Path(__file__).with_name("_dist_pretrain_losses.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), str(script), str(out)]
    done = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_two_processes_match_single_process(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from _dist_pretrain_losses import CASES, make_batch
    finally:
        sys.path.pop(0)
    ranks = _run_two_processes(tmp_path)
    for case in CASES:
        batch = make_batch(case)
        leaves = {k: v.clone().requires_grad_(True) for k, v in batch.items() if k in ("a", "b", "scale")}
        if case["kind"] == "image":
            loss = image_text_loss(leaves["a"], leaves["b"], leaves["scale"])
        else:
            loss = region_text_loss(leaves["a"], leaves["b"], leaves["scale"], caption_ids=batch["ids"],
                                    describes=batch["describes"] if case.get("describes") else None)
        loss.backward()
        got = [r[case["name"]] for r in ranks]
        # mean of the per-process losses == the single-process loss on the whole batch
        assert (got[0]["loss"] + got[1]["loss"]) / 2 == pytest.approx(loss.item(), abs=1e-6), case["name"]
        # DDP averages gradients over the 2 processes: local-row gradients / 2 == single-process gradients
        for key in ("a", "b"):
            dist_grad = torch.tensor(got[0][key] + got[1][key]).reshape(leaves[key].shape) / 2
            torch.testing.assert_close(dist_grad, leaves[key].grad, atol=1e-6, rtol=1e-5)
        scale_grad = (got[0]["scale"] + got[1]["scale"]) / 2
        assert scale_grad == pytest.approx(leaves["scale"].grad.item(), abs=1e-6), case["name"]
