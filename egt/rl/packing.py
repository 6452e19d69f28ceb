"""Padding-free packed rows for RL's log-prob passes (``rl.packing=true``, issue 37 item 3).

The passes of :func:`egt.rl.rollout.logprobs_and_entropy` (π_old, π_ref, the gradient pass) run b rows of
``[left-padded prompt | completion padded to L]``: every completion computes L positions whatever its
length, and every prompt T (the longest). Packed, each unit runs at its **real length** and units share
rows up to a token budget:

- a unit is a GRPO group ``[prompt | c_1 | … | c_G]`` under ``rl.shared_prompt_pass=packed`` (each
  completion up to and including its stop token, no inner padding; the prompt without its left padding),
  or one sequence ``[prompt | completion]`` under ``rl.shared_prompt_pass=false`` (the prompt repeated per
  row, as the full pass runs it);
- ``rl.packing_max_tokens=null``: one unit per row (rows padded at their tail to the widest); an integer N:
  units laid into rows of at most N tokens, best-fit decreasing (:func:`egt.sft.packing.pack_rows`, TRL's
  ``pack_dataset(strategy="bfd")``, huggingface/trl@v0.24.0 trl/data_utils.py), a longer unit alone;
- attention is a 4D mask built here (:func:`pack_layout`): a key is visible to a query when both are in the
  same unit, key ≤ query, and the key is in the unit's prompt or in the query's own completion — so a unit
  never sees another, and a completion sees its prompt and its own past only; the row's tail is masked;
- positions are each token's positions in its own unpacked row ``[prompt | completion]`` (the model's
  ``get_rope_index``, mRoPE 3 × …; the prompt's real tokens keep the positions the left-padded full pass
  gives them, the completion's continue from max(prompt) + 1), so positions restart per unit.

Every completion token therefore sees the same keys at the same positions as in the full pass: log-probs,
entropies and gradients equal the full pass's to fp32 summation order (tests/unit/rl/test_packing.py),
which is why ``rl.packing`` is not in the RL stage's key. The mask goes in as transformers 5.25's mask
functions make it for sdpa (bool) / eager (additive); other attention implementations may ignore a 4D mask:
then the pass falls back to the unpacked path (logged once). SFT's packing (:mod:`egt.sft.packing`) lets
transformers block the mask from restarting text positions instead; that cannot express a shared prompt.

Cost, per pass: Σ over units of their real tokens (``rl/logprob_tokens``) plus the rows' tail padding
(``rl/logprob_positions`` = rows × width) language-model positions, instead of b·(T + L) (full) or
P·(T + G·L) (``shared_prompt_pass=packed`` alone). Under sdpa / eager the attention stays dense over width² per
row (sdpa's math / memory-efficient kernels do not skip masked blocks), so a large budget trades linear-layer
padding for attention work. Under ``model.attn_implementation=egt_varlen`` no mask is built: the layout goes to
the attention as prefix-grouped varlen sequences (:func:`egt.models.attention.prefix_groups`: each prompt causal
over itself, each completion over its prompt and its own past), so a row costs Σ over its units of
n_p² + Σ_k n_k (n_p + n_k) attention, whatever the budget — the same numbers (tests/unit/rl/test_packing.py).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from egt.data.encode import TEXT_KEYS, collate, token_keys
from egt.sft.packing import pack_rows

log = logging.getLogger(__name__)


@dataclass
class PassTokens:
    """Language-model positions the log-prob passes ran: ``tokens`` real (prompt and completion tokens up
    to the stop token), ``positions`` computed (padding included). Summed over the passes of an update."""

    tokens: int = 0
    positions: int = 0

    def add(self, tokens: int, positions: int) -> None:
        self.tokens += int(tokens)
        self.positions += int(positions)


@dataclass
class PackedLayout:
    """Where every token of the packed rows comes from, and who may attend to whom (:func:`pack_layout`).

    R rows of width W; each column holds a prompt token (``prompt[r, c]`` = index p of the distinct prompt,
    ``prompt_col`` its column in the left-padded prompts [P, T]) or a completion token (``comp_row`` = row i
    of the b completions, ``comp_col`` = token j), or nothing (the tail: both −1)."""

    units: list[list[int]]  # the b rows of each unit (a group, or one row)
    unit_prompt: list[int]  # [U] distinct prompt index p of each unit
    order: list[int]  # units in row-major order (the order their images go to the vision tower)
    prompt: torch.Tensor  # [R, W] p, −1 elsewhere
    prompt_col: torch.Tensor  # [R, W] column in the left-padded prompt batch, −1 elsewhere
    comp_row: torch.Tensor  # [R, W] completion row i, −1 elsewhere
    comp_col: torch.Tensor  # [R, W] token j of completion i, −1 elsewhere
    unit: torch.Tensor  # [R, W] the unit of each token, −1 on the tail
    part: torch.Tensor  # [R, W] 0 the unit's prompt (or the whole unit unshared), k the unit's completion k
    src_row: torch.Tensor  # [b] packed row of completion i
    src_col: torch.Tensor  # [b, L] column whose hidden state predicts token j (masked tokens: the first's)
    tokens: int  # real tokens in the rows

    def mask(self, device: torch.device | str | None = None) -> torch.Tensor:
        """[R, W, W] bool (query, key) on ``device`` (default: the CPU), the 4D mask sdpa / eager take: a key is
        visible when both tokens are in the same unit, key ≤ query, and the key is in the unit's prompt or in
        the query's own completion; the diagonal always (no empty query row). egt_varlen needs none."""
        unit, part = self.unit.to(device), self.part.to(device)
        W = unit.shape[1]
        idx = torch.arange(W, device=device)
        causal = idx[:, None] >= idx[None, :]  # [W, W]
        same_unit = unit[:, :, None] == unit[:, None, :]  # [R, W, W] (query, key)
        visible = (part[:, None, :] == 0) | (part[:, None, :] == part[:, :, None])
        eye = torch.eye(W, dtype=torch.bool, device=device)[None]
        return ((unit >= 0)[:, None, :] & causal[None] & same_unit & visible) | eye


def pack_layout(
    runs: Sequence[int],
    prompt_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    shared: bool,
    max_tokens: int | None,
) -> PackedLayout:
    """The packed rows of b completions whose rows come in ``runs`` of one prompt each (``prompt_runs``).

    prompt_mask: [P, T] (1 on the left-padded prompts' real tokens), completion_mask: [b, L] (1 up to and
    including the stop token, a prefix). ``shared``: a unit per run ``[prompt | c_1 | … | c_G]``; else a
    unit per row ``[prompt | c_i]``. The [R, W] maps are built on the CPU; the attention mask (R·W² bools)
    only when asked for (:meth:`PackedLayout.mask`). Raises ValueError for a completion mask that is not a prefix.

    >>> lay = pack_layout([2], torch.tensor([[0, 1]]), torch.tensor([[1, 1], [1, 0]]), True, None)
    >>> lay.comp_row.tolist(), lay.comp_col.tolist(), lay.src_col.tolist()
    ([[-1, 0, 0, 1]], [[-1, 0, 1, 0]], [[0, 1], [0, 0]])
    >>> lay.mask()[0].int()  # columns: prompt, c1, c1, c2 (c2 stops after one token: no inner padding)
    tensor([[1, 0, 0, 0],
            [1, 1, 0, 0],
            [1, 1, 1, 0],
            [1, 0, 0, 1]], dtype=torch.int32)
    """
    P, T = prompt_mask.shape
    b, L = completion_mask.shape
    n_comp = completion_mask.sum(-1).long().cpu()  # [b]
    if not torch.equal(completion_mask.cpu().bool(), torch.arange(L)[None] < n_comp[:, None]):
        raise ValueError("rl.packing: a completion mask is not a prefix (1 up to the stop token, then 0)")
    n_prompt = prompt_mask.sum(-1).long().cpu()  # [P]
    starts = [0, *itertools.accumulate(runs[:-1])]
    groups = [list(range(s, s + n)) for s, n in zip(starts, runs)]
    units = groups if shared else [[i] for g in groups for i in g]
    unit_prompt = [p for p, g in enumerate(groups) for _ in ([g] if shared else g)]
    lengths = [int(n_prompt[p]) + int(n_comp[u].sum()) for u, p in zip(units, unit_prompt)]
    rows = pack_rows(lengths, max_tokens) if max_tokens is not None else [[u] for u in range(len(units))]
    R, W = len(rows), max(sum(lengths[u] for u in r) for r in rows)
    prompt, prompt_col, comp_row, comp_col, unit, part = (torch.full((R, W), -1, dtype=torch.long) for _ in range(6))
    src_row, src_col = torch.zeros(b, dtype=torch.long), torch.zeros((b, L), dtype=torch.long)
    for r, members in enumerate(rows):
        off = 0
        for u in members:
            p, n = unit_prompt[u], int(n_prompt[unit_prompt[u]])
            prompt[r, off : off + n], prompt_col[r, off : off + n] = p, torch.arange(T - n, T)
            unit[r, off : off + n], part[r, off : off + n] = u, 0
            last, off = off + n - 1, off + n  # the prompt's last token predicts every completion's first
            for k, i in enumerate(units[u]):
                m = int(n_comp[i])
                comp_row[r, off : off + m], comp_col[r, off : off + m] = i, torch.arange(m)
                unit[r, off : off + m], part[r, off : off + m] = u, k + 1 if shared else 0
                src_row[i] = r
                src_col[i] = last
                if m > 1:  # m = 0 (an empty completion, an all-zero mask row): nothing here, nothing read
                    src_col[i, 1:m] = torch.arange(off, off + m - 1)
                off += m
    order = [u for r in rows for u in r]
    return PackedLayout(
        units, unit_prompt, order, prompt, prompt_col, comp_row, comp_col, unit, part, src_row, src_col, sum(lengths)
    )


def packed_hidden(
    model: Any,
    prompt_feats: Sequence[dict[str, torch.Tensor]],
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    pad_id: int,
    shared: bool,
    max_tokens: int | None,
    counts: PassTokens | None = None,
) -> tuple[torch.Tensor, Any] | None:
    """The hidden states that predict the b completion tokens, [b, L, H], and the output head, from padding-free
    packed rows (:func:`pack_layout`; ``shared``: a unit per GRPO group, else per row); None (nothing run)
    when the model cannot (the reasons of ``rl.shared_prompt_pass=packed``: no Qwen2-VL-style
    ``get_rope_index`` with ``mm_token_type_ids``, or an attention implementation other than sdpa / eager /
    egt_varlen; logged once), and the caller runs the unpacked path. ``counts`` gets the pass's real and computed
    tokens."""
    from egt.rl.rollout import (
        _packed_prompt_unsupported,
        _prompt_completion_positions,
        _warned,
        packed_attention,
        prompt_runs,
    )

    why = _packed_prompt_unsupported(model, prompt_feats[0])
    if why is not None:
        if f"packing {why}" not in _warned:
            _warned.add(f"packing {why}")
            log.info("rl.packing: running unpacked rows (%s)", why)
        return None
    runs = prompt_runs(prompt_feats)
    base, head = model.model, model.get_output_embeddings()
    device = next(model.parameters()).device
    starts = [0, *itertools.accumulate(runs[:-1])]
    distinct = [prompt_feats[s] for s in starts]
    prompts = {k: v.to(device) for k, v in collate(distinct, pad_id, "left").items()}
    b, L = completion_ids.shape
    lay = pack_layout(runs, prompts["attention_mask"].cpu(), completion_mask.cpu(), shared, max_tokens)
    positions = _prompt_completion_positions(base, prompts, L)  # [3, P, T+L]
    T = prompts["input_ids"].shape[1]
    is_p, is_c = (lay.prompt >= 0).to(device), (lay.comp_row >= 0).to(device)  # [R, W]
    p_at, pc_at = lay.prompt.clamp(min=0).to(device), lay.prompt_col.clamp(min=0).to(device)
    i_at, j_at = lay.comp_row.clamp(min=0).to(device), lay.comp_col.clamp(min=0).to(device)
    comp = completion_ids.to(device, prompts["input_ids"].dtype)
    ids = torch.where(is_p, prompts["input_ids"][p_at, pc_at], torch.where(is_c, comp[i_at, j_at], pad_id))
    p_of_i = torch.repeat_interleave(torch.arange(len(runs), device=device), torch.tensor(runs, device=device))
    pos = torch.where(is_p, positions[:, p_at, pc_at], positions[:, p_of_i[i_at], T + j_at])  # [3, R, W]
    pos = pos * (is_p | is_c)  # the tail: 0
    inputs: dict[str, torch.Tensor] = {}
    for k in token_keys(distinct[0]):  # mm_token_type_ids …: the prompt's values, 0 (text) on completions
        inputs[k] = torch.where(is_p, prompts[k][p_at, pc_at], torch.zeros((), dtype=prompts[k].dtype, device=device))
    per_unit = [distinct[lay.unit_prompt[u]] for u in lay.order]  # images in the order their tokens appear
    for key in dict.fromkeys(k for f in per_unit for k in f):
        if key not in TEXT_KEYS and key not in inputs:
            inputs[key] = torch.cat([f[key] for f in per_unit if key in f], 0).to(device)
    attention, attn = packed_attention(base, lay.unit, lay.part, lambda: lay.mask(device))
    said = f"packing {attn}"
    if said not in _warned:
        _warned.add(said)
        log.info(
            "rl.packing: %d units (%s) in %d rows of %d tokens, %d real of %d (%s)",
            len(lay.units),
            "groups" if shared else "sequences",
            ids.shape[0],
            ids.shape[1],
            lay.tokens,
            ids.numel(),
            attn,
        )
    if counts is not None:
        counts.add(lay.tokens, ids.numel())
    hidden = base(input_ids=ids, position_ids=pos, use_cache=False, **attention, **inputs).last_hidden_state
    return hidden[lay.src_row.to(device)[:, None], lay.src_col.to(device)], head  # [b, L, H]
