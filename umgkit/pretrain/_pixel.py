"""MGCA-style pixel-level pseudo alignment between text-aligned pixel embeddings and region captions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._loss_utils import inverse_temperature, multi_positive_ce, zero_loss

__all__ = ["pixel_alignment_loss", "pixel_assignment", "region_support"]


def region_support(boxes: torch.Tensor | None, masks: torch.Tensor | None, num_regions: int, h: int, w: int,
                   device: torch.device) -> torch.Tensor:
    """``(K, h*w)`` bool: the pixels a caption may claim.

    A pixel (row i, column j) covers ``[j, j+1) x [i, i+1)`` of the grid and is inside box XYXY when its
    centre ``(j + 0.5, i + 0.5)`` is (borders included); the pixel holding the box centre is always in,
    so tiny boxes keep one pixel. With a mask the support is box AND mask; if that is empty it falls back
    to the box, with no box to the mask, and an empty result to the whole image.
    """
    full = torch.ones(num_regions, h, w, dtype=torch.bool, device=device)
    box_in = full
    if boxes is not None:
        b = boxes.to(device=device, dtype=torch.float32)
        cx = torch.arange(w, device=device, dtype=torch.float32) + 0.5
        cy = torch.arange(h, device=device, dtype=torch.float32) + 0.5
        in_x = (cx[None] >= b[:, 0:1]) & (cx[None] <= b[:, 2:3])  # (K, w)
        in_y = (cy[None] >= b[:, 1:2]) & (cy[None] <= b[:, 3:4])  # (K, h)
        box_in = in_y[:, :, None] & in_x[:, None, :]
        ix = ((b[:, 0] + b[:, 2]) / 2).floor().long().clamp(0, w - 1)
        iy = ((b[:, 1] + b[:, 3]) / 2).floor().long().clamp(0, h - 1)
        box_in[torch.arange(num_regions, device=device), iy, ix] = True
    support = box_in
    if masks is not None:
        m = masks.to(device=device, dtype=torch.bool)
        support = box_in & m
        fallback = box_in if boxes is not None else m
        empty = ~support.flatten(1).any(dim=1)
        support = torch.where(empty[:, None, None], fallback, support)
    empty = ~support.flatten(1).any(dim=1)
    support = torch.where(empty[:, None, None], full, support)
    return support.flatten(1)


def pixel_assignment(sim: torch.Tensor, support: torch.Tensor, image_index: torch.Tensor,
                     num_images: int) -> torch.Tensor:
    """``(K, h*w)`` bool pseudo correspondence (no gradient).

    sim (K, h*w) similarity of caption k to the pixels of its image. A pixel goes to the caption(s) of its
    image with the highest similarity among those whose support holds it (exact ties go to all tied
    captions). A caption that wins no pixel keeps its best pixel inside its support, so none is empty.
    """
    k, hw = sim.shape
    s = sim.detach().float().masked_fill(~support, float("-inf"))
    best = torch.full((num_images, hw), float("-inf"), device=sim.device)
    best = best.scatter_reduce(0, image_index[:, None].expand(k, hw), s, reduce="amax", include_self=True)
    assigned = support & (s >= best[image_index])
    lonely = ~assigned.any(dim=1)
    if bool(lonely.any()):
        own_best = F.one_hot(s.argmax(dim=1), hw).to(torch.bool)
        assigned = torch.where(lonely[:, None], own_best, assigned)
    return assigned


def pixel_alignment_loss(pixel_emb: torch.Tensor, text_emb: torch.Tensor, image_index: torch.Tensor,
                         logit_scale: torch.Tensor | float, *, boxes: torch.Tensor | None = None,
                         masks: torch.Tensor | None = None, hard_negatives: bool = True,
                         caption_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Pixel-level pseudo alignment (after MGCA's pseudo correspondences), restricted by boxes/masks.

    pixel_emb (B, D, h, w) L2-normalised per pixel; text_emb (K, D) region captions; image_index (K,) the
    image of each caption; boxes (K, 4) XYXY floats in the h x w grid and/or masks (K, h, w) bool.

    1. Pseudo correspondence (`pixel_assignment`, detached): each pixel of image b goes to the caption of
       image b it is most similar to, among captions whose support (`region_support`) holds it.
    2. Pooled term: ``z_k = normalise(mean of the pixels assigned to k)``; symmetric InfoNCE of z_k vs
       caption k with every other caption of the batch as negative (``scale * z @ text^T``, (K, K)).
    3. Hard-negative term (``hard_negatives``): every assigned pixel is classified over the captions of
       its own image only (the hard negatives: other objects of the same scene), target its pseudo caption;
       cross-entropy averaged per caption, then over captions whose image has another, different caption.
    Result: pooled + hard term. ``caption_ids`` (K,) as in `region_text_loss`: equal ids are positives.
    """
    if pixel_emb.dim() != 4 or text_emb.dim() != 2 or pixel_emb.shape[1] != text_emb.shape[1]:
        raise ValueError(f"pixel_alignment_loss: pixel_emb {tuple(pixel_emb.shape)} and text_emb "
                         f"{tuple(text_emb.shape)} must be (B, D, h, w) and (K, D) with the same D.")
    nb, _, h, w = pixel_emb.shape
    k = text_emb.shape[0]
    for name, t, shape in (("image_index", image_index, (k,)), ("boxes", boxes, (k, 4)),
                           ("masks", masks, (k, h, w)), ("caption_ids", caption_ids, (k,))):
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"pixel_alignment_loss: {name} has shape {tuple(t.shape)}, expected {shape}.")
    if k == 0:
        return zero_loss(pixel_emb, text_emb, logit_scale)
    device = pixel_emb.device
    image_index = image_index.to(device, torch.long)
    if int(image_index.min()) < 0 or int(image_index.max()) >= nb:
        raise ValueError(f"pixel_alignment_loss: image_index values {image_index.tolist()} must lie in "
                         f"[0, {nb}) (the batch has {nb} images).")
    ids = torch.arange(k, device=device) if caption_ids is None else caption_ids.to(device, torch.long)
    scale = inverse_temperature(logit_scale)

    # captions grouped per image in padded slots, so similarities cost B * Kmax * hw, not B * K * hw
    per_image = torch.bincount(image_index, minlength=nb)  # (B,)
    kmax = int(per_image.max())
    order = torch.argsort(image_index, stable=True)
    first = per_image.cumsum(0) - per_image
    slot = torch.empty_like(image_index)
    slot[order] = torch.arange(k, device=device) - first[image_index[order]]  # rank within its image
    text_pad = text_emb.new_zeros(nb, kmax, text_emb.shape[1]).index_put((image_index, slot), text_emb)
    sim_pad = text_pad @ pixel_emb.flatten(2)  # (B, Kmax, hw)
    sim = sim_pad[image_index, slot]  # (K, hw): caption k vs the pixels of its image
    pix = pixel_emb.flatten(2).transpose(1, 2)  # (B, hw, D)
    support = region_support(boxes, masks, k, h, w, device)
    assigned = pixel_assignment(sim, support, image_index, nb)  # (K, hw)

    reg, p = assigned.nonzero(as_tuple=True)  # pairs (caption, pixel)
    rows = image_index[reg] * (h * w) + p
    counts = assigned.sum(dim=1).to(pix.dtype)  # (K,) >= 1
    # index_select, not [rows]: rows repeat on ties, and indexing's backward then adds in a racy order on CPU
    picked = pix.reshape(nb * h * w, -1).index_select(0, rows)  # (n, D)
    pooled = pix.new_zeros(k, pix.shape[2]).index_add(0, reg, picked)
    z = F.normalize(pooled / counts[:, None], dim=1)  # (K, D)
    positives = ids[:, None] == ids[None, :]
    logits = scale * z @ text_emb.t()  # (K, K)
    loss = 0.5 * (multi_positive_ce(logits, positives).mean()
                  + multi_positive_ce(logits.t(), positives).mean())
    if not hard_negatives:
        return loss

    same_image = image_index[:, None] == image_index[None, :]  # (K, K)
    eligible = (same_image & ~positives).any(dim=1)  # caption k has a different caption in its image
    if not bool(eligible.any()):
        return loss + zero_loss(pixel_emb)
    valid = torch.arange(kmax, device=device)[None, :] < per_image[:, None]  # (B, Kmax) real slots
    ids_pad = torch.zeros(nb, kmax, dtype=torch.long, device=device).index_put((image_index, slot), ids)
    img = image_index[reg]
    per_pixel = sim_pad.transpose(1, 2).reshape(nb * h * w, kmax)
    pix_logits = scale * per_pixel.index_select(0, rows)  # (n, Kmax): each assigned pixel vs its captions
    pix_logits = pix_logits.masked_fill(~valid[img], torch.finfo(pix_logits.dtype).min)
    ce = multi_positive_ce(pix_logits, valid[img] & (ids_pad[img] == ids[reg][:, None]))  # (n,)
    per_caption = ce.new_zeros(k).index_add(0, reg, ce) / counts
    return loss + per_caption[eligible].mean()
