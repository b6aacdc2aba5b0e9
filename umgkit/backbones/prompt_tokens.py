"""Learned prompt tokens inside a text tower: the hook the CoOp family acts through.

CoOp writes a prompt as ``[V]_1 ... [V]_M <class name>.`` where the ``[V]`` are learned word embeddings.
Every family's text tower starts with a token-embedding lookup (umg and open_clip ``token_embedding``,
transformers ``text_model.embeddings.token_embedding``), so the prompt is tokenised with ``M`` copies of a
placeholder word and a forward hook on that lookup replaces the placeholders' embeddings by the learned
ones. The rest of the tower (position embeddings, causal mask, end-of-text pooling, projection) runs
unchanged through the family's own layers: no copy of any tower is kept here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["PLACEHOLDER", "PlaceholderSlot", "find_placeholder_slot", "prompt_texts", "context_inserted",
           "word_token_ids"]

PLACEHOLDER = "X"  # CoOp's placeholder word: one token in CLIP's BPE and in the transformers tokenizers


@dataclass(frozen=True)
class PlaceholderSlot:
    """Where the first prompt token lands in the tokenised prompt and the placeholder's token id."""

    offset: int  # index of the first context token (after a start-of-text token, where the tokenizer has one)
    token_id: int


def _ids(tokens: object) -> torch.Tensor:
    """``(N, L)`` token ids from a family's ``tokenize`` output (a tensor, or transformers' mapping)."""
    return tokens["input_ids"] if isinstance(tokens, dict) else tokens  # type: ignore[index]


def find_placeholder_slot(tokenize) -> PlaceholderSlot:
    """Tokenise the placeholder alone and the empty text; the first position where they differ is the slot."""
    ids = _ids(tokenize([PLACEHOLDER, ""]))
    differ = (ids[0] != ids[1]).nonzero()
    if not len(differ):
        raise RuntimeError(f"the tokenizer gives the same ids for {PLACEHOLDER!r} and ''; learned prompt "
                           "tokens cannot be placed.")
    offset = int(differ[0, 0])
    return PlaceholderSlot(offset, int(ids[0, offset]))


def word_token_ids(tokenize, slot: PlaceholderSlot, words: str) -> list[int]:
    """The ids ``words`` tokenise to, without special tokens (the ids between the slot and the rest)."""
    ids, empty = (row.tolist() for row in _ids(tokenize([words, ""])))
    tail = empty[slot.offset:]  # what follows the text in the empty prompt (end token, padding)
    for n in range(1, len(ids) - slot.offset + 1):
        rest = ids[slot.offset + n:]
        if rest == tail[:len(rest)]:
            return ids[slot.offset:slot.offset + n]
    raise ValueError(f"could not find the tokens of {words!r} in its tokenised form (truncated?).")


def prompt_texts(texts: Sequence[str], n_ctx: int) -> list[str]:
    """Each text after ``n_ctx`` placeholder words."""
    lead = " ".join([PLACEHOLDER] * n_ctx)
    return [f"{lead} {t}" for t in texts]


@contextmanager
def context_inserted(embedding: nn.Module, context: torch.Tensor, slot: PlaceholderSlot) -> Iterator[None]:
    """While active, ``embedding``'s output at the ``M`` placeholder positions is ``context``.

    ``context``: ``(M, W)`` for every row of the lookup, or ``(N, M, W)`` one per row. The ids must hold
    the placeholder at those positions (`prompt_texts`); anything else raises, never a silent shift.
    """

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        ids = args[0]
        m, start = context.shape[-2], slot.offset
        if not bool((ids[:, start:start + m] == slot.token_id).all()):
            raise RuntimeError(f"the tokenised prompt does not hold {m} placeholder tokens at position "
                               f"{start}; the tokenizer merged or truncated them (use a shorter context "
                               "or text).")
        ctx = context.to(output.dtype)
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(output.shape[0], -1, -1)
        elif ctx.shape[0] != output.shape[0]:
            raise ValueError(f"context has {ctx.shape[0]} rows for {output.shape[0]} prompts.")
        return torch.cat([output[:, :start], ctx, output[:, start + m:]], dim=1)  # (N, L, W)

    handle = embedding.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
