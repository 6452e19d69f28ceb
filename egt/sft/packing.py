"""Padding-free packing for SFT (``sft.packing=true``, issue 37 item 3).

A padded micro-batch of b samples is [b, T_max]: every row runs T_max positions through the language
model, ``b·T_max − Σ n_i`` of them padding. Packed, the same b samples (the same samples per optimizer
step: packing changes the layout of a micro-batch, never which samples it holds) are laid end to end
into R rows of width W:

- ``sft.packing_max_tokens=null`` (default): one row of Σ n_i tokens, no padding at all — the
  padding-free layout of TRL's ``padding_free=True`` / ``DataCollatorWithFlattening``;
- an integer N: rows of at most N tokens filled best-fit-decreasing (TRL's ``pack_dataset(...,
  strategy="bfd")``, trl/data_utils.py, huggingface/trl@v0.24.0), a sample longer than N alone in a row
  of its own; rows shorter than the widest get a padding tail.

Per sequence (what keeps every sample's numbers its own):

- **positions restart** at 0: text positions ``0 … n_i−1`` and the multimodal RoPE positions
  ``[3, n_i]`` that ``get_rope_index`` gives the sample alone (what the padded run computes for it with
  its attention mask); both concatenated along the row → ``position_ids`` [4, R, W] (text row first),
  the layout Qwen2-VL-family models in transformers 5.x read as "packed" (modeling_qwen2_5_vl.py,
  ``Qwen2_5_VLTextModel.forward``: a 4-row position tensor's first row is the text positions the mask
  is built from);
- **attention is blocked per sequence**: no ``attention_mask`` is passed, so transformers'
  ``masking_utils.create_causal_mask`` detects the packed sequences from the text positions
  (``find_packed_sequence_indices``: a new sequence wherever the position does not grow by 1) and builds
  a block-diagonal causal mask — a dense [R, 1, W, W] boolean mask for ``sdpa`` (float for ``eager``);
  with ``flash_attention_2`` the same text positions give the varlen path (``cu_seqlens``,
  modeling_flash_attention_utils.py ``_is_packed_sequence``, which needs R = 1: hence
  ``packing_max_tokens=null`` there; untested here, no GPU). With ``model.attn_implementation=egt_varlen``
  (egt.models.attention, the GPU path) no mask is built at all (its mask builder returns None without a
  padding mask) and the attention function cuts each row into sequences at the same position resets, row
  by row, so R rows of ``packing_max_tokens`` with padding tails are fine (the kernel sees
  ``cu_seqlens`` over the R·W flattened tokens; a tail is one more sequence). A row's padding tail is one
  more block (positions 0 … p−1) that nothing real attends to;
- **labels**: the first token of every sample is never a target (in the padded run ``labels[:, 0]`` is
  never predicted), so a sample's first label is set to −100 and its first token is not "predicted"
  from the previous sample's last;
- **images**: ``pixel_values`` are flat patches, ``image_grid_thw`` one row per image; they are
  reordered with the samples into the rows' order (the order the image tokens appear in, row-major),
  so each image's placeholder tokens receive its own features. With ``packing_max_tokens=null`` the
  order is the sample order, so the vision tower sees exactly the padded run's input; with an integer
  budget, the same images in another order (the tower's attention is per image: the same output to
  fp32 rounding).

The loss: the packed NLL [R, W−1] is gathered back into the padded layout [b, T_max−1]
(:func:`unpack`), so :func:`egt.sft.loss.reduce_nll` sums the same target tokens and divides by the same
step counts as the padded run (token or sequence reduction, accumulation and ranks included); packed and
padded losses and gradients differ only by fp32 summation order (tests/unit/sft/test_packing.py).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from egt.data.encode import IGNORE, TEXT_KEYS, token_keys
from egt.errors import ConfigError

PACK_INDEX = "pack_index"  # [b, 5] long: row, offset, length, first image (packed order), images — per sample
# attention implementations that block attention per packed sequence from the text positions (transformers
# masking_utils for eager / sdpa / flex; the flash-attention varlen path from position_ids; egt_varlen cuts
# sequences at the position resets itself, any number of rows: egt.models.attention.varlen_attention_forward)
BLOCKING_ATTENTION = ("eager", "sdpa", "flex_attention", "flash_attention_2", "flash_attention_3", "egt_varlen")
ONE_ROW_ONLY = ("flash_attention_2", "flash_attention_3")  # varlen from position_ids needs one row


def pack_rows(lengths: Sequence[int], max_tokens: int | None) -> list[list[int]]:
    """Which samples go in which row: ``None`` → one row, all samples in order; else best-fit decreasing
    into rows of at most ``max_tokens`` (a longer sample alone in its own row), each row's samples in
    their original order, rows ordered by their first sample.

    >>> pack_rows([3, 5, 2], None)
    [[0, 1, 2]]
    >>> pack_rows([3, 5, 2, 4], 6)   # 5 → new; 4 → new; 3 → fits neither (1, 2 left) → new; 2 → best fit: the 4's row
    [[0], [1], [2, 3]]
    >>> pack_rows([9, 1], 4)
    [[0], [1]]
    """
    if max_tokens is None:
        return [list(range(len(lengths)))]
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda j: (-lengths[j], j)):
        fits = [r for r in range(len(rows)) if room[r] >= lengths[i]]
        if fits:
            r = min(fits, key=lambda k: (room[k], k))  # best fit: the fullest row it fits in
            rows[r].append(i)
            room[r] -= lengths[i]
        else:
            rows.append([i])
            room.append(max_tokens - lengths[i])
    return sorted((sorted(r) for r in rows), key=lambda r: r[0])


def pack_collate(batch: Sequence[dict[str, torch.Tensor]], pad_id: int, max_tokens: int | None) -> dict[str, Any]:
    """The packed micro-batch of ``batch`` (samples as :meth:`ChatEncoder.encode_example` returns them):
    ``input_ids``, ``labels`` and every per-token field [R, W]; ``pixel_values`` / ``image_grid_thw`` (and
    any other per-image field) in the rows' order; :data:`PACK_INDEX` [b, 5]; no ``attention_mask``
    (the blocking comes from the positions, :func:`packed_positions`)."""
    lengths = [len(b["input_ids"]) for b in batch]
    rows = pack_rows(lengths, max_tokens)
    width = max(sum(lengths[i] for i in r) for r in rows)
    R = len(rows)
    ids = torch.full((R, width), pad_id, dtype=torch.long)
    labels = torch.full((R, width), IGNORE, dtype=torch.long)
    per_token = token_keys(batch[0])
    extra = {k: torch.zeros((R, width), dtype=batch[0][k].dtype) for k in per_token}
    n_images = [int(b["image_grid_thw"].shape[0]) if "image_grid_thw" in b else 0 for b in batch]
    index = torch.zeros((len(batch), 5), dtype=torch.long)
    order: list[int] = []  # samples in row-major order: the order their image tokens appear in
    for r, members in enumerate(rows):
        off = 0
        for i in members:
            n = lengths[i]
            ids[r, off : off + n] = batch[i]["input_ids"]
            if "labels" in batch[i]:
                labels[r, off : off + n] = batch[i]["labels"]
                labels[r, off] = IGNORE  # a sample's first token is never a target (nor predicted across samples)
            for k in per_token:
                extra[k][r, off : off + n] = batch[i][k]
            index[i, :3] = torch.tensor([r, off, n])
            off += n
            order.append(i)
    first = 0
    for i in order:
        index[i, 3:] = torch.tensor([first, n_images[i]])
        first += n_images[i]
    out: dict[str, Any] = {"input_ids": ids, "labels": labels, **extra, PACK_INDEX: index}
    for key in dict.fromkeys(k for b in batch for k in b):  # as egt.data.encode.collate: over the samples having it
        if key not in TEXT_KEYS and key not in per_token:
            out[key] = torch.cat([batch[i][key] for i in order if key in batch[i]], dim=0)
    return out


def row_positions(index: torch.Tensor, width: int) -> torch.Tensor:
    """Text positions [R, W]: ``0 … n−1`` per sample, and each row's padding tail ``0 … p−1`` (a block of
    its own). ``index``: :data:`PACK_INDEX`.

    >>> row_positions(torch.tensor([[0, 0, 2, 0, 0], [0, 2, 3, 0, 0], [1, 0, 1, 0, 0]]), 6)
    tensor([[0, 1, 0, 1, 2, 0],
            [0, 0, 1, 2, 3, 4]])
    """
    R = int(index[:, 0].max()) + 1
    pos = torch.arange(width).expand(R, width).clone()
    for r, off, n in index[:, :3].tolist():
        pos[r, off : off + n] = torch.arange(n)
    for r in range(R):  # the tail starts after the row's last sample
        end = int((index[index[:, 0] == r, 1] + index[index[:, 0] == r, 2]).max())
        pos[r, end:] = torch.arange(width - end)
    return pos


def packed_positions(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``position_ids`` for a packed batch: [4, R, W] (text positions, then the 3 multimodal RoPE rows,
    each sample's from ``get_rope_index`` of that sample alone) for a Qwen2-VL-family base model; [R, W]
    text positions for a model without ``get_rope_index``."""
    index, ids = batch[PACK_INDEX], batch["input_ids"]
    text = row_positions(index, ids.shape[1]).to(ids.device)
    base = getattr(model, "model", None)
    rope = getattr(base, "get_rope_index", None)
    if rope is None:
        return text
    mrope = text.unsqueeze(0).repeat(3, 1, 1)  # text-only samples and tails: t = h = w = the text position
    grids = batch.get("image_grid_thw")
    for r, off, n, first, k in index.tolist():
        if k == 0:  # get_rope_index of a text-only sample is 0 … n−1 on all three rows
            continue
        pos, _ = rope(
            input_ids=ids[r : r + 1, off : off + n],
            mm_token_type_ids=batch["mm_token_type_ids"][r : r + 1, off : off + n],
            image_grid_thw=grids[first : first + k],
        )  # [3, 1, n]
        mrope[:, r, off : off + n] = pos[:, 0]
    return torch.cat([text.unsqueeze(0), mrope], 0)


def model_inputs(model: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What the model's forward takes for a packed batch: everything but labels and the index, with
    :func:`packed_positions` and no attention mask."""
    check_attention(model, int(batch["input_ids"].shape[0]))
    inputs = {k: v for k, v in batch.items() if k not in ("labels", PACK_INDEX, "attention_mask")}
    inputs["position_ids"] = packed_positions(model, batch)
    return inputs


def check_attention(model: Any, rows: int) -> None:
    """Raise :class:`ConfigError` where the model's attention implementation would let packed samples see
    each other: one that does not block from positions, or a flash varlen path given several rows."""
    config = getattr(model, "config", None)
    impl = getattr(config, "_attn_implementation", None) or "sdpa"
    text = getattr(config, "text_config", None)
    impl = getattr(text, "_attn_implementation", None) or impl
    if impl not in BLOCKING_ATTENTION:
        raise ConfigError(
            f"sft.packing=true: attention implementation {impl!r} cannot block attention per packed sequence; "
            f"set model.attn_implementation to one of {list(BLOCKING_ATTENTION[:2])} (or egt_varlen, "
            "flash_attention_2), "
            "or sft.packing=false"
        )
    if impl in ONE_ROW_ONLY and rows > 1:
        raise ConfigError(
            f"sft.packing=true with {impl}: its varlen path takes one packed row, this batch has {rows}; "
            "set sft.packing_max_tokens=null (one row per micro-batch) or model.attn_implementation=sdpa"
        )


def unpack(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Per-position values of the packed rows [R, W−1] (position t predicts token t+1) in the padded
    layout [b, T_max−1] (sample i's positions 0 … n_i−2; 0 beyond), differentiably.

    >>> unpack(torch.tensor([[1., 2., 3., 4.]]), torch.tensor([[0, 0, 2, 0, 0], [0, 2, 3, 0, 0]]))
    tensor([[1., 0.],
            [3., 4.]])
    """
    R, Wm1 = values.shape
    b, t_max = index.shape[0], int(index[:, 2].max())
    index = index.to(values.device)
    rows, offs, lens = index[:, 0:1], index[:, 1:2], index[:, 2:3]  # [b, 1]
    j = torch.arange(max(t_max - 1, 0), device=values.device).unsqueeze(0)  # [1, T−1]
    valid = j < lens - 1  # [b, T−1]
    flat = (rows * Wm1 + (offs + j).clamp(max=Wm1 - 1)).where(valid, torch.zeros_like(j))
    out = values.reshape(-1)[flat.reshape(-1)].reshape(b, -1)
    return out * valid.to(values.dtype)


def n_samples(batch: dict[str, torch.Tensor]) -> int:
    """Samples in a micro-batch, packed or padded."""
    return int(batch[PACK_INDEX].shape[0]) if PACK_INDEX in batch else int(batch["input_ids"].shape[0])


def token_counts(batch: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(real tokens, token slots the model runs) of a micro-batch: Σ n_i, and R·W packed or b·T_max padded."""
    slots = int(batch["input_ids"].numel())
    if PACK_INDEX in batch:
        return int(batch[PACK_INDEX][:, 2].sum()), slots
    return int(batch["attention_mask"].sum()), slots


def validate(packing: bool, max_tokens: int | None, attn_implementation: str, where: str = "sft") -> None:
    """Config-time check of the packing settings (egt.config.validation)."""
    if max_tokens is not None and max_tokens < 1:
        raise ConfigError(f"{where}.packing_max_tokens={max_tokens} must be >= 1, or null (one row per micro-batch)")
    if not packing:
        return
    if attn_implementation not in (*BLOCKING_ATTENTION, "auto"):
        raise ConfigError(
            f"{where}.packing=true needs attention blocked per packed sequence: model.attn_implementation="
            f"{attn_implementation!r} cannot; write model.attn_implementation=sdpa (or eager, egt_varlen, "
            "flash_attention_2)"
        )
    if attn_implementation in ONE_ROW_ONLY and max_tokens is not None:
        raise ConfigError(
            f"{where}.packing=true with model.attn_implementation={attn_implementation}: the varlen path takes "
            f"one packed row; write {where}.packing_max_tokens=null (not {max_tokens})"
        )
