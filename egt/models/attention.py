"""``model.attn_implementation=egt_varlen``: variable-length (packed, padding-free) attention for the
language model and the vision tower's windowed blocks, registered with transformers' attention interface.

What it computes is softmax attention, ``softmax(q kᵀ · scale + mask) v`` per head, exactly what ``sdpa``
computes, but over the *valid* tokens only, packed into one ``[T, H, D]`` tensor with cumulative sequence
lengths ``cu_seqlens`` (``[N + 1]`` int32, ``cu_seqlens[i]`` = first token of sequence ``i``), so neither
padding nor the vision tower's per-window loop costs kernel launches or FLOPs. The sequences are:

- **vision tower** (Qwen2.5-VL): the ``cu_seqlens`` its forward already builds (one sequence per window in
  the windowed blocks, one per image in the full-attention blocks; transformers
  ``models/qwen2_5_vl/modeling_qwen2_5_vl.py`` ``Qwen2_5_VisionTransformerPretrainedModel.forward``).
  Under ``sdpa`` transformers loops over the windows in Python (``Qwen2_5_VLVisionAttention.forward``'s
  non-flash branch, one sdpa call per window: ~100s per image at the paper's pixel budget); only names
  containing "flash" take its one-call ``cu_seqlens`` branch, and such a name makes transformers load a
  flash kernel from the Hub, so egt replaces each vision attention's ``forward`` with
  :func:`_vision_attention_forward` (the same q/k/v projection and rotary embedding, one varlen call).
- **language model**: from ``cu_seq_lens_q``/``cu_seq_lens_k`` when the caller passes them (as
  transformers' ``DataCollatorWithFlattening`` does for flash attention), else from packed ``position_ids``
  (a new sequence wherever a position is not its predecessor + 1: transformers
  ``masking_utils.find_packed_sequence_indices``), else one sequence per row holding the row's valid tokens
  from the 2D padding mask (transformers registers the flash mask builder
  ``masking_utils.flash_attention_mask`` for the name, which passes the 2D mask through or ``None`` when
  nothing is padded; with a ``StaticCache``, generation.decode=static|compiled, the mask is shorter than the
  preallocated keys and the keys are cut to its length, as flash-attn's ``_upad_input`` does). Causal attention
  aligns each sequence's queries to the end of its keys (flash-attn 2's
  bottom-right convention): query ``i`` of ``n_q`` sees keys ``j <= i + n_k - n_q``. That is sdpa's causal
  mask on absolute positions whenever the queries are the row's last ``L_q`` key positions (no cache:
  ``L_q = L_k``; with a cache: the new tokens), padded or not: the valid keys after a valid query are
  exactly the valid queries after it, so ``n_k - (n_q - 1 - i)`` keys precede or are it.

**Shared prefixes** (RL's packed GRPO groups, ``rl.shared_prompt_pass=packed`` / ``rl.packing``): a row
``[prompt | c_1 | … | c_G]`` in which each completion sees the prompt and its own past only. The caller passes
the layout as :class:`PrefixGroups` (kwarg ``egt_prefix_groups``, built by :func:`prefix_groups`): one varlen
sequence for each prompt (queries and keys: its tokens, causal) and one for each completion (queries: its
tokens; keys: the prompt's then its own, gathered by index, causal bottom-right, so query ``j`` sees the whole
prompt and its own tokens up to ``j``). The attention's work is Σ_p (n_p² + Σ_k n_k (n_p + n_k)) instead of the
dense (n_p + Σ_k n_k)² a 4D mask costs under sdpa, no [W, W] mask exists, and the prompt's keys are copied once
per completion (G · n_p · H_kv · D per layer, transient) — Prefix Grouper's split (Liu et al., 2025, "Prefix
Grouper: Efficient GRPO Training through Shared-Prefix Forward", arXiv 2506.05433), expressed as one varlen
call. Other 4D masks are not padding masks: those calls go to transformers' ``sdpa_attention_forward``
unchanged (logged once). Output at padded query positions is 0 (sdpa gives an
unused value there); every valid position equals sdpa's up to the kernel's summation order.

Kernels (:func:`varlen_backend`), in order: torch's ``torch.nn.attention.varlen.varlen_attn`` (torch ≥ 2.10;
its CUDA flash kernel ``aten::_flash_attention_forward``: it does not run on CPU, fp16/bf16 only), then
flash-attn 2's ``flash_attn_varlen_func`` (the ``flash-attn`` distribution at 2.x; :func:`flash_attn_2_version`).
Neither runs on CPU or in fp32, so :func:`resolve` falls back to ``sdpa`` there with one log line. The
``reference`` kernel (:func:`reference_varlen`, one sdpa call per sequence) is exact on any device: the tests
use it to check the packing, the ``cu_seqlens`` and the vision patch against sdpa in fp32 on CPU.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import types
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

NAME = "egt_varlen"
BACKENDS = ("torch", "flash_attn", "reference")

# kernel(q [T_q, H_q, D], k [T_k, H_kv, D], v [T_k, H_kv, D], cu_q [N+1] int32, cu_k [N+1] int32,
#        max_q, max_k, scale, causal) -> [T_q, H_q, D]
Kernel = Callable[..., torch.Tensor]
_state: dict[str, Any] = {"backend": None, "kernel": None, "warned_4d": False}


def flash_attn_2_version() -> str | None:
    """The installed ``flash-attn`` distribution's version when it is flash-attn 2.x, else None.

    By distribution, not ``importlib.util.find_spec("flash_attn")``: flash-attn-4 (distribution
    ``flash-attn-4``) installs a ``flash_attn`` namespace package (``flash_attn.cute``) without flash-attn 2's
    ``flash_attn_varlen_func`` / ``flash_attn_2_cuda``, so the module being importable says nothing."""
    try:
        version = importlib.metadata.version("flash-attn")
    except importlib.metadata.PackageNotFoundError:
        return None
    return version if version.split(".")[0] == "2" else None


def torch_varlen_available() -> bool:
    """Whether the installed torch has ``torch.nn.attention.varlen.varlen_attn`` (torch ≥ 2.10)."""
    try:
        return importlib.util.find_spec("torch.nn.attention.varlen") is not None
    except (ImportError, ValueError):
        return False


def varlen_backend(device: str | None = None, dtype: str | None = None) -> tuple[str | None, str]:
    """``(backend, why)``: the kernel ``egt_varlen`` will use on ``device`` (default: CUDA when available)
    for weights in ``dtype``, or ``(None, reason)`` when none can run (then :func:`resolve` uses sdpa)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not device.startswith("cuda"):
        return None, f"the device is {device}: torch's varlen and flash-attn 2 kernels are CUDA-only"
    if dtype == "float32":
        return None, "model.dtype=float32: the varlen kernels take float16/bfloat16 only"
    if torch_varlen_available():
        return "torch", f"torch {torch.__version__} torch.nn.attention.varlen.varlen_attn"
    if (fa := flash_attn_2_version()) is not None:
        return "flash_attn", f"flash-attn {fa} flash_attn_varlen_func"
    return None, f"torch {torch.__version__} has no torch.nn.attention.varlen and flash-attn 2 is not installed"


def resolve(dtype: str | None = None, device: str | None = None) -> str:
    """``egt_varlen`` registered with its kernel when one can run here, else ``sdpa``; one log line each way."""
    backend, why = varlen_backend(device, dtype)
    if backend is None:
        log.info("attn_implementation=%s: %s, using sdpa (PyTorch scaled-dot-product attention)", NAME, why)
        return "sdpa"
    register(backend)
    log.info("attn_implementation=%s: varlen attention with %s", NAME, why)
    return NAME


def _torch_kernel(q, k, v, cu_q, cu_k, max_q, max_k, scale, causal):
    from torch.nn.attention.varlen import varlen_attn

    return varlen_attn(
        q, k, v, cu_q, cu_k, max_q, max_k, scale=scale,
        window_size=(-1, 0) if causal else (-1, -1), enable_gqa=q.shape[1] != k.shape[1],
    )  # fmt: skip


def _flash_attn_kernel(q, k, v, cu_q, cu_k, max_q, max_k, scale, causal):
    from flash_attn import flash_attn_varlen_func  # flash-attn 2: GQA by head count, causal bottom-right

    return flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, dropout_p=0.0, softmax_scale=scale, causal=causal)


def reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, scale, causal):
    """The varlen contract in plain torch, one ``F.scaled_dot_product_attention`` per sequence (any device,
    any dtype): q ``[T_q, H_q, D]``, k/v ``[T_k, H_kv, D]`` (``H_q`` a multiple of ``H_kv``), ``cu_q``/``cu_k``
    ``[N + 1]``; causal aligned bottom-right (query ``i`` of ``n_q`` sees keys ``j <= i + n_k - n_q``).
    Returns ``[T_q, H_q, D]``. ``max_q``/``max_k`` are unused (the kernels' launch sizes)."""
    rep = q.shape[1] // k.shape[1]
    out = q.new_zeros(q.shape)
    for i in range(cu_q.numel() - 1):
        qs, qe, ks, ke = int(cu_q[i]), int(cu_q[i + 1]), int(cu_k[i]), int(cu_k[i + 1])
        if qe == qs:
            continue
        qi, ki, vi = (t.transpose(0, 1)[None] for t in (q[qs:qe], k[ks:ke], v[ks:ke]))  # [1, H, n, D]
        ki, vi = ki.repeat_interleave(rep, dim=1), vi.repeat_interleave(rep, dim=1)
        mask = None
        if causal:
            n_q, n_k = qe - qs, ke - ks
            mask = torch.arange(n_k, device=q.device)[None, :] <= torch.arange(n_q, device=q.device)[:, None] + (
                n_k - n_q
            )  # [n_q, n_k]
        out[qs:qe] = F.scaled_dot_product_attention(qi, ki, vi, attn_mask=mask, scale=scale)[0].transpose(0, 1)
    return out


_KERNELS: dict[str, Kernel] = {"torch": _torch_kernel, "flash_attn": _flash_attn_kernel, "reference": reference_varlen}


def register(backend: str = "torch") -> None:
    """Register ``egt_varlen`` (attention function and mask builder) with transformers, using ``backend``
    (one of :data:`BACKENDS`) for every later call; a model then loads with ``attn_implementation="egt_varlen"``.
    Idempotent; the last backend wins (process-wide, as transformers' interface is)."""
    if backend not in _KERNELS:
        raise ValueError(f"egt_varlen backend {backend!r} is not one of {list(BACKENDS)}")
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    _state.update(backend=backend, kernel=_KERNELS[backend])
    AttentionInterface.register(NAME, varlen_attention_forward)
    # the flash mask builder: the 2D padding mask (None when nothing is padded) for us to unpad from
    AttentionMaskInterface.register(NAME, flash_attention_mask)


def ensure_registered() -> str:
    """The registered backend, registering the one :func:`varlen_backend` picks if none is; raises
    ImportError naming the reason when no kernel can run here (a direct ``load_model(...,
    attn_implementation="egt_varlen")`` on CPU: stages go through :func:`resolve`, which falls back to sdpa)."""
    if _state["backend"] is None:
        backend, why = varlen_backend()
        if backend is None:
            raise ImportError(f"attn_implementation='{NAME}': {why}. Use attn_implementation='sdpa' here.")
        register(backend)
    return _state["backend"]


def _kernel() -> Kernel:
    if _state["kernel"] is None:
        raise RuntimeError(f"{NAME} is not registered: call egt.models.attention.register(backend) first")
    return _state["kernel"]


def _cu(lengths: torch.Tensor) -> torch.Tensor:
    """``[N]`` lengths → ``[N + 1]`` int32 cumulative starts."""
    return F.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)


def _segments_from_positions(position_ids: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` packed positions → ``[S]`` lengths of the sequences, row by row (a new one wherever a
    position is not its predecessor + 1; transformers masking_utils.find_packed_sequence_indices)."""
    lengths = []
    for row in position_ids:
        starts = [0] + (torch.nonzero(torch.diff(row) != 1).flatten() + 1).tolist() + [row.numel()]
        lengths += [e - s for s, e in zip(starts[:-1], starts[1:])]
    return torch.tensor(lengths, device=position_ids.device)


@dataclass
class PrefixGroups:
    """The varlen sequences of rows that share prefixes (:func:`prefix_groups`), passed to the attention
    function as ``egt_prefix_groups``: ``q_index`` [T_q] and ``kv_index`` [T_k] flat indices into the
    ``[R · W]`` tokens of the rows (a prefix's tokens appear in ``kv_index`` once for the prefix and once per
    continuation), ``cu_q`` / ``cu_k`` [N + 1] int32, the longest sequences ``max_q`` / ``max_k``, and ``shape``
    = (R, W), which a call's query must have (checked: indices into other rows would be silently wrong)."""

    q_index: torch.Tensor
    kv_index: torch.Tensor
    cu_q: torch.Tensor
    cu_k: torch.Tensor
    max_q: int
    max_k: int
    shape: tuple[int, int]


def prefix_groups(unit: torch.Tensor, part: torch.Tensor, device: torch.device | str | None = None) -> PrefixGroups:
    """Varlen sequences for rows of units ``[prefix | continuation_1 | … | continuation_G]``.

    unit: [R, W] long, the unit of each token (−1: padding, seen by nobody, its output 0); part: [R, W] long,
    0 for the unit's shared prefix (a unit of part 0 only is one causal sequence), k ≥ 1 for its k-th
    continuation. A unit's prefix comes before its continuations and each part's tokens are in order (as
    RL's packed rows lay them out). Sequences: each prefix (queries = keys = its tokens), then each
    continuation (queries: its tokens; keys: the prefix's, then its own), all causal bottom-right: a
    continuation's query ``j`` sees the whole prefix and its own tokens ≤ ``j``, nothing of another
    continuation or unit — what the 4D mask of :func:`egt.rl.rollout.packed_layout` allows.

    >>> g = prefix_groups(torch.tensor([[0, 0, 0, 0, 0, -1]]), torch.tensor([[0, 0, 1, 1, 2, -1]]))
    >>> g.q_index.tolist(), g.kv_index.tolist(), g.cu_q.tolist(), g.cu_k.tolist(), g.max_q, g.max_k
    ([0, 1, 2, 3, 4], [0, 1, 0, 1, 2, 3, 0, 1, 4], [0, 2, 4, 5], [0, 2, 6, 9], 2, 4)
    """
    R, W = unit.shape
    q_parts: list[torch.Tensor] = []
    kv_parts: list[torch.Tensor] = []
    len_q: list[int] = []
    len_k: list[int] = []
    unit, part = unit.cpu(), part.cpu()
    for r in range(R):
        valid = unit[r] >= 0
        cols = torch.nonzero(valid).flatten()
        if cols.numel() == 0:
            continue
        u_row, p_row = unit[r, cols], part[r, cols]
        for u in dict.fromkeys(u_row.tolist()):
            in_u = cols[u_row == u] + r * W
            p_u = p_row[u_row == u]
            prefix = in_u[p_u == 0]
            seqs = [(prefix, prefix)] if prefix.numel() else []
            for k in dict.fromkeys(p_u[p_u > 0].tolist()):
                own = in_u[p_u == k]
                seqs.append((own, torch.cat([prefix, own])))
            for q, kv in seqs:
                q_parts.append(q)
                kv_parts.append(kv)
                len_q.append(q.numel())
                len_k.append(kv.numel())
    empty = torch.zeros(0, dtype=torch.long)
    q_index = torch.cat(q_parts) if q_parts else empty
    kv_index = torch.cat(kv_parts) if kv_parts else empty
    return PrefixGroups(
        q_index.to(device),
        kv_index.to(device),
        _cu(torch.tensor(len_q, dtype=torch.long)).to(device),
        _cu(torch.tensor(len_k, dtype=torch.long)).to(device),
        max(len_q, default=0),
        max(len_k, default=0),
        (R, W),
    )


def varlen_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    position_ids: torch.Tensor | None = None,
    cu_seq_lens_q: torch.Tensor | None = None,
    cu_seq_lens_k: torch.Tensor | None = None,
    max_length_q: int | None = None,
    max_length_k: int | None = None,
    sliding_window: int | None = None,
    softcap: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function contract (``integrations/sdpa_attention.py``
    ``sdpa_attention_forward``): query ``[B, H_q, L_q, D]``, key/value ``[B, H_kv, L_k, D]``, ``attention_mask``
    ``[B, L_k]`` bool (1 = token) or None → ``([B, L_q, H_q, D], None)``. Sequences as in the module docstring;
    ``egt_prefix_groups`` (a :class:`PrefixGroups`) takes precedence over the mask and the positions in the
    language model's (causal) calls; a non-causal call ignores it: transformers forwards the model's kwargs to
    the vision tower too (``get_image_features(..., **kwargs)``), whose attention, where
    :func:`patch_vision_tower` did not replace it (Qwen2-VL), calls this function per window with
    ``is_causal=False`` — the groups index the text rows' tokens, not the window's."""
    groups = kwargs.pop("egt_prefix_groups", None)
    if attention_mask is not None and attention_mask.dim() == 4:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        if not _state["warned_4d"]:
            log.info("%s: a 4D attention mask (not a padding mask) goes to sdpa", NAME)
            _state["warned_4d"] = True
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    if dropout:
        raise NotImplementedError(f"{NAME}: attention dropout {dropout} is not supported (Qwen2.5-VL uses 0.0)")
    if sliding_window is not None or softcap is not None:
        raise NotImplementedError(f"{NAME}: sliding_window / softcap are not supported; use sdpa for this model")
    causal = bool(is_causal if is_causal is not None else getattr(module, "is_causal", True))
    if groups is not None and causal:
        return _prefix_grouped(query, key, value, groups, scaling)
    b, h_q, l_q, d = query.shape
    l_k = key.shape[2]
    q, k, v = (t.transpose(1, 2) for t in (query, key, value))  # [B, L, H, D]
    if cu_seq_lens_q is not None:  # the caller packed: B == 1
        cu_q = cu_seq_lens_q.to(torch.int32)
        cu_k = (cu_seq_lens_k if cu_seq_lens_k is not None else cu_seq_lens_q).to(torch.int32)
        lengths_q, lengths_k = cu_q.diff(), cu_k.diff()
        q_index = None
    elif attention_mask is None and position_ids is not None and l_q == l_k:  # packed rows
        lengths_q = lengths_k = _segments_from_positions(position_ids.expand(b, -1))
        q_index = None
    else:  # one sequence per row: its valid tokens
        if attention_mask is not None and attention_mask.shape[1] < l_k:
            # a StaticCache (generation.decode=static|compiled): l_k preallocated slots, the mask covers the first
            # ones written so far (transformers' flash_attention_mask); the keys are those slots, as flash-attn's
            # _upad_input slices them (transformers modeling_flash_attention_utils.py)
            l_k = attention_mask.shape[1]
            k, v = k[:, :l_k], v[:, :l_k]
        valid_k = torch.ones(b, l_k, dtype=torch.bool, device=q.device) if attention_mask is None else attention_mask
        valid_k = valid_k[:, -l_k:].bool()
        valid_q = valid_k[:, -l_q:]  # with a cache the queries are the last l_q key positions
        lengths_q, lengths_k = valid_q.sum(1), valid_k.sum(1)
        q_index = valid_q.flatten().nonzero().flatten()
        k_index = valid_k.flatten().nonzero().flatten()
    if q_index is None:
        qp, kp, vp = q.reshape(b * l_q, h_q, d), k.reshape(b * l_k, -1, d), v.reshape(b * l_k, -1, d)
    else:
        qp = q.reshape(b * l_q, h_q, d).index_select(0, q_index)
        kp, vp = (t.reshape(b * l_k, -1, d).index_select(0, k_index) for t in (k, v))
    cu_q, cu_k = _cu(lengths_q), _cu(lengths_k)
    max_q = int(max_length_q) if max_length_q is not None else int(lengths_q.max())
    max_k = int(max_length_k) if max_length_k is not None else int(lengths_k.max())
    out = _kernel()(qp.contiguous(), kp.contiguous(), vp.contiguous(), cu_q, cu_k, max_q, max_k, scaling, causal)
    if q_index is None:
        return out.reshape(b, l_q, h_q, d), None
    full = out.new_zeros(b * l_q, h_q, d).index_copy(0, q_index, out)
    return full.reshape(b, l_q, h_q, d), None


def _prefix_grouped(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, groups: PrefixGroups, scaling: float | None
) -> tuple[torch.Tensor, None]:
    """Attention over :class:`PrefixGroups`: query ``[B, H_q, L, D]``, key/value ``[B, H_kv, L, D]`` →
    ``([B, L, H_q, D], None)``, 0 at the tokens no sequence holds (padding)."""
    b, h_q, length, d = query.shape
    if (b, length) != tuple(groups.shape) or key.shape[2] != length:
        raise ValueError(
            f"{NAME}: egt_prefix_groups were built for rows {tuple(groups.shape)} (R, W), the attention got a query of "
            f"{b} × {length} and keys of {key.shape[2]} positions (a cache or another model's call?)"
        )
    dev = query.device  # the groups are built on the embeddings' device: a model split over devices moves them
    q_index, kv_index = groups.q_index.to(dev), groups.kv_index.to(dev)
    q, k, v = (t.transpose(1, 2).reshape(b * length, t.shape[1], d) for t in (query, key, value))  # [B·L, H, D]
    qp = q.index_select(0, q_index)
    kp, vp = k.index_select(0, kv_index), v.index_select(0, kv_index)
    scale = scaling if scaling is not None else d**-0.5
    out = _kernel()(
        qp.contiguous(), kp.contiguous(), vp.contiguous(), groups.cu_q.to(dev), groups.cu_k.to(dev), groups.max_q,
        groups.max_k, scale, True,
    )  # fmt: skip
    full = out.new_zeros(b * length, h_q, d).index_copy(0, q_index, out)
    return full.reshape(b, length, h_q, d), None


def _vision_attention_forward(
    self: torch.nn.Module,
    hidden_states: torch.Tensor,
    cu_seqlens: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
    max_seqlen: int | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """``Qwen2_5_VLVisionAttention.forward`` (transformers 5.25, models/qwen2_5_vl/modeling_qwen2_5_vl.py) with
    its flash branch's single varlen call for every implementation: hidden ``[T, C]`` → ``[T, C]``; ``cu_seqlens``
    ``[N + 1]`` the windows (or images) of this block, non-causal."""
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision

    t = hidden_states.shape[0]
    q, k, v = self.qkv(hidden_states).reshape(t, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)  # [T, H, D]
    cos, sin = position_embeddings
    q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
    cu = cu_seqlens.to(torch.int32)
    m = int(max_seqlen) if max_seqlen is not None else int(cu.diff().max())
    out = _kernel()(q.contiguous(), k.contiguous(), v.contiguous(), cu, cu, m, m, self.scaling, False)
    return self.proj(out.reshape(t, -1).contiguous())


def patch_vision_tower(model: torch.nn.Module) -> int:
    """Give every Qwen2.5-VL vision attention of ``model`` the one-call varlen forward
    (:func:`_vision_attention_forward`); returns how many were patched (0 for other models: their vision
    towers call the registered function per window, which is exact but not faster)."""
    try:
        from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLVisionAttention
    except ImportError:  # pragma: no cover - transformers without Qwen2.5-VL
        return 0
    n = 0
    for mod in model.modules():
        if isinstance(mod, Qwen2_5_VLVisionAttention):
            mod.forward = types.MethodType(_vision_attention_forward, mod)
            n += 1
    return n
