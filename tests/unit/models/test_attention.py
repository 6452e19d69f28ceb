"""model.attn_implementation=egt_varlen (egt.models.attention): selection and fallback, flash-attn detection
by distribution, and exactness against sdpa in fp32 on the tiny model and the Qwen2.5-VL replica's shapes.

torch 2.13's ``varlen_attn`` runs only on CUDA (``aten::_flash_attention_forward`` has no CPU kernel), so
the CPU tests run the registered function, the packing, the cu_seqlens and the vision patch with the
``reference`` kernel (one sdpa call per sequence); the real kernel is checked by the ``gpu`` test."""

from __future__ import annotations

import importlib.metadata
import logging

import pytest
import torch

from egt.models import attention
from egt.models.loader import load_model
from egt.models.resolve import resolve_attn

# fp32 attention over ≤ 64 tokens, 2–4 layers: summation-order differences are ~1e-7 relative per op
ATOL = 1e-5


@pytest.fixture(autouse=True)
def _restore_backend():
    saved = dict(attention._state)
    yield
    attention._state.update(saved)
    if saved["kernel"] is not None:
        attention.register(saved["backend"])


def _fake_versions(monkeypatch, installed: dict[str, str]):
    def version(name):
        if name in installed:
            return installed[name]
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(attention.importlib.metadata, "version", version)


@pytest.mark.parametrize(
    "installed, expected",
    [
        ({"flash-attn": "2.7.4.post1"}, "2.7.4.post1"),
        ({"flash-attn-4": "4.0.0b4"}, None),  # installs a flash_attn namespace, not flash-attn 2
        ({"flash-attn": "3.0.0"}, None),
        ({}, None),
    ],
)
def test_flash_attn_2_is_detected_by_its_distribution(monkeypatch, installed, expected):
    _fake_versions(monkeypatch, installed)
    assert attention.flash_attn_2_version() == expected


def test_backend_choice(monkeypatch):
    assert attention.varlen_backend("cpu", "bfloat16")[0] is None
    assert "CUDA-only" in attention.varlen_backend("cpu", "bfloat16")[1]
    assert attention.varlen_backend("cuda", "float32") == (
        None,
        "model.dtype=float32: the varlen kernels take float16/bfloat16 only",
    )
    monkeypatch.setattr(attention, "torch_varlen_available", lambda: True)
    assert attention.varlen_backend("cuda", "bfloat16")[0] == "torch"
    monkeypatch.setattr(attention, "torch_varlen_available", lambda: False)
    _fake_versions(monkeypatch, {"flash-attn": "2.8.3"})
    assert attention.varlen_backend("cuda", "bfloat16") == ("flash_attn", "flash-attn 2.8.3 flash_attn_varlen_func")
    _fake_versions(monkeypatch, {"flash-attn-4": "4.0.0"})
    assert attention.varlen_backend("cuda", "bfloat16")[0] is None


def test_installed_torch_has_varlen_but_it_is_cuda_only():
    """What this CPU environment has: the module (torch 2.13), whose kernel refuses CPU tensors."""
    assert attention.torch_varlen_available()
    from torch.nn.attention.varlen import varlen_attn

    q = torch.randn(6, 2, 8)
    cu = torch.tensor([0, 2, 6], dtype=torch.int32)
    with pytest.raises(NotImplementedError, match="CPU"):
        varlen_attn(q, q, q, cu, cu, 4, 4)


def test_resolve_falls_back_to_sdpa_on_cpu_with_one_line(caplog):
    with caplog.at_level(logging.INFO, logger="egt.models.attention"):
        assert resolve_attn("egt_varlen", "float32") == "sdpa"
    lines = [r.getMessage() for r in caplog.records if "egt_varlen" in r.getMessage()]
    assert len(lines) == 1 and "using sdpa" in lines[0] and "CUDA-only" in lines[0]


def test_resolve_registers_when_a_kernel_runs(monkeypatch):
    monkeypatch.setattr(attention, "varlen_backend", lambda device=None, dtype=None: ("reference", "test"))
    assert resolve_attn("egt_varlen", "bfloat16") == "egt_varlen"
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    assert "egt_varlen" in AttentionInterface._global_mapping and "egt_varlen" in AttentionMaskInterface._global_mapping
    assert attention._state["backend"] == "reference"


def test_direct_load_without_a_kernel_says_what_to_use(tiny_model_dir):
    attention._state.update(backend=None, kernel=None)
    with pytest.raises(ImportError, match="CUDA-only.*attn_implementation='sdpa'"):
        load_model(tiny_model_dir, attn_implementation="egt_varlen")


def test_flash_attention_2_without_the_distribution(tiny_model_dir, monkeypatch):
    _fake_versions(monkeypatch, {"flash-attn-4": "4.0.0"})
    with pytest.raises(ImportError, match=r"flash-attn 2.*pip install egt\[gpu\]"):
        load_model(tiny_model_dir, attn_implementation="flash_attention_2")


def test_reference_kernel_hand_worked():
    """One head, D=1, scale 1: q=[0, 0], k=[0, ln 3] → weights (1/4, 3/4) on v=[1, 5] → 4 for the
    second query (non-causal); the first causal query sees key 0 only → 1."""
    q = torch.zeros(2, 1, 1)
    k = torch.tensor([0.0, 1.0]).view(2, 1, 1)
    v = torch.tensor([1.0, 5.0]).view(2, 1, 1)
    q[1] = torch.log(torch.tensor(3.0))  # q·k: query 1 scores (0, ln 3)
    cu = torch.tensor([0, 2], dtype=torch.int32)
    full = attention.reference_varlen(q, k, v, cu, cu, 2, 2, 1.0, False)
    causal = attention.reference_varlen(q, k, v, cu, cu, 2, 2, 1.0, True)
    assert torch.allclose(full[1], torch.tensor(4.0)) and torch.allclose(full[0], torch.tensor(3.0))
    assert torch.allclose(causal[0], torch.tensor(1.0)) and torch.allclose(causal[1], torch.tensor(4.0))


def test_packed_positions_split_where_a_position_is_not_its_predecessor_plus_one():
    pos = torch.tensor([[0, 1, 2, 0, 1, 5, 6, 7], [3, 4, 0, 1, 2, 3, 0, 1]])
    assert attention._segments_from_positions(pos).tolist() == [3, 2, 3, 2, 4, 2]
    assert attention._cu(torch.tensor([3, 2])).tolist() == [0, 3, 5]


# --- exactness on real models ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def replica_dir(tmp_path_factory):
    """The Qwen2.5-VL replica's config.json (egt.models.replica.replica_config: the 7B's layout, its 152,064
    rows, a windowed and a full-attention vision block), random weights; no tokenizer needed here."""
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration

    from egt.models.builder import TinyVLMSpec
    from egt.models.replica import replica_config
    import json

    out = tmp_path_factory.mktemp("replica_cfg")
    (out / "config.json").write_text(
        json.dumps(replica_config(TinyVLMSpec(hidden_size=64, num_heads=4, num_kv_heads=2, intermediate_size=128)))
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration._from_config(AutoConfig.from_pretrained(out))
    model.save_pretrained(out)
    return out


def _pair(path):
    attention.register("reference")
    ref = load_model(path, attn_implementation="sdpa")
    var = load_model(path, attn_implementation="egt_varlen")
    assert sum(m.forward.__func__ is attention._vision_attention_forward for m in var.modules() if hasattr(m, "qkv"))
    return ref, var


def _images(cfg):
    """Two images whose patch grids are not multiples of the 8×8-patch window (112 px / 14 px): several
    windows per image, the last ones partial."""
    grid = torch.tensor([[1, 12, 20], [1, 8, 6]])
    n = int(grid.prod(-1).sum())
    torch.manual_seed(1)
    return torch.randn(n, 3 * 2 * 14 * 14), grid


@pytest.mark.parametrize("which", ["tiny", "replica"])
def test_vision_tower_matches_sdpa_with_gradients(which, tiny_model_dir, replica_dir):
    ref, var = _pair(tiny_model_dir if which == "tiny" else replica_dir)
    pixels, grid = _images(ref.config)
    outs, grads = [], []
    for m in (ref, var):
        emb = m.model.visual(pixels, grid_thw=grid).pooler_output  # [tokens, hidden]
        emb.pow(2).sum().backward()
        outs.append(emb.detach())
        grads.append(m.model.visual.blocks[0].attn.qkv.weight.grad.clone())
    assert outs[0].shape[0] == (12 * 20 + 8 * 6) // 4
    torch.testing.assert_close(outs[1], outs[0], atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-4, rtol=1e-4)  # a sum over ~300 outputs


def _text_batch(cfg, left: bool):
    """Two rows, 10 and 6 tokens, padded left or right; the first with one image of 2×2 merged tokens."""
    img = [cfg.vision_start_token_id] + [cfg.image_token_id] * 4 + [cfg.vision_end_token_id]
    rows = [[11, 12, *img, 13, 14], [21, 22, 23, 24, 25, 26]]
    width = max(map(len, rows))
    ids = torch.zeros(2, width, dtype=torch.long)
    mask = torch.zeros(2, width, dtype=torch.long)
    for i, r in enumerate(rows):
        sl = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, sl], mask[i, sl] = torch.tensor(r), 1
    torch.manual_seed(2)
    return ids, mask, torch.randn(16, 3 * 2 * 14 * 14), torch.tensor([[1, 4, 4]])


@pytest.mark.parametrize("which", ["tiny", "replica"])
@pytest.mark.parametrize("left", [True, False])
def test_language_model_with_padding_matches_sdpa(which, left, tiny_model_dir, replica_dir):
    ref, var = _pair(tiny_model_dir if which == "tiny" else replica_dir)
    ids, mask, pixels, grid = _text_batch(ref.config, left)
    outs = [
        m.model(input_ids=ids, attention_mask=mask, pixel_values=pixels, image_grid_thw=grid).last_hidden_state
        for m in (ref, var)
    ]  # [B, L, hidden]: compared where there are tokens (sdpa's padded positions are unused values)
    valid = mask.bool()
    torch.testing.assert_close(outs[1][valid], outs[0][valid], atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("which", ["tiny", "replica"])
def test_packed_row_matches_separate_sequences(which, tiny_model_dir, replica_dir):
    """One row holding sequences of 5 and 7 tokens, positions restarting (the 4-row text+mRoPE layout
    transformers reads packed positions from) equals each sequence run alone under sdpa."""
    ref, var = _pair(tiny_model_dir if which == "tiny" else replica_dir)
    a, b = torch.arange(30, 35), torch.arange(40, 47)
    pos = torch.cat([torch.arange(5), torch.arange(7)])
    packed = var.model(input_ids=torch.cat([a, b])[None], position_ids=pos.view(1, 1, -1).expand(4, 1, -1))
    alone = [ref.model(input_ids=x[None]).last_hidden_state[0] for x in (a, b)]
    torch.testing.assert_close(packed.last_hidden_state[0], torch.cat(alone), atol=ATOL, rtol=1e-5)


def test_decode_with_a_cache_matches_sdpa(tiny_model_dir):
    """Left-padded greedy decoding (the probe/eval path): queries are the new tokens, keys the cache."""
    ref, var = _pair(tiny_model_dir)
    ids = torch.tensor([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]])
    mask = (torch.arange(5) >= torch.tensor([[2], [0]])).long()
    kw = dict(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False, output_scores=True)
    outs = [m.generate(**kw, return_dict_in_generate=True) for m in (ref, var)]
    assert torch.equal(outs[0].sequences, outs[1].sequences)
    torch.testing.assert_close(torch.stack(outs[1].scores), torch.stack(outs[0].scores), atol=1e-4, rtol=1e-5)


def test_static_cache_decode_matches_sdpa(tiny_model_dir):
    """generation.decode=static (egt.eval.generation.DECODE): the cache holds max_cache_len key slots and the 2D
    mask only the positions written so far (transformers' flash_attention_mask passes it shorter than the keys);
    the keys are those of the mask's length, per row (as flash-attn's ``_upad_input`` slices them). Row 1
    would otherwise read row 0's empty cache slots as its keys."""
    ref, var = _pair(tiny_model_dir)
    ids = torch.tensor([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]])
    mask = (torch.arange(5) >= torch.tensor([[2], [0]])).long()
    kw = dict(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False, output_scores=True)
    dynamic = ref.generate(**kw, return_dict_in_generate=True)
    static = var.generate(**kw, return_dict_in_generate=True, cache_implementation="static", disable_compile=True)
    assert torch.equal(static.sequences, dynamic.sequences)
    torch.testing.assert_close(torch.stack(static.scores), torch.stack(dynamic.scores), atol=1e-4, rtol=1e-5)


def test_cached_prefix_then_right_padded_rows_match_sdpa(tiny_model_dir):
    """The pattern of RL's shared prompt pass (egt.rl.rollout.shared_prompt_hidden): a left-padded prompt
    pass into a cache, then right-padded completions attending to it (padded queries among the new ones)."""
    from transformers import DynamicCache

    ref, var = _pair(tiny_model_dir)
    prompt = torch.tensor([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]])
    p_mask = (torch.arange(5) >= torch.tensor([[2], [0]])).long()
    done = torch.tensor([[20, 21, 22, 0], [23, 24, 0, 0]])
    d_mask = (torch.arange(4) < torch.tensor([[3], [2]])).long()
    outs = []
    for m in (ref, var):
        cache = DynamicCache(config=m.model.language_model.config)
        m.model(input_ids=prompt, attention_mask=p_mask, cache=cache, use_cache=True)
        mask = torch.cat([p_mask, d_mask], 1)
        pos = (mask.cumsum(1) - 1).clamp(min=0)[:, 5:]
        outs.append(
            m.model(
                input_ids=done, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True
            ).last_hidden_state
        )
    torch.testing.assert_close(outs[1][d_mask.bool()], outs[0][d_mask.bool()], atol=ATOL, rtol=1e-5)


def test_a_4d_mask_goes_to_sdpa():
    """egt's shared-prompt pass passes its own 4D mask: those calls are sdpa's, unchanged."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    attention.register("reference")
    mod = torch.nn.Module()
    mod.is_causal, mod.num_key_value_groups = True, 1
    torch.manual_seed(3)
    q, k, v = (torch.randn(1, 2, 5, 4) for _ in range(3))
    mask = torch.ones(1, 1, 5, 5, dtype=torch.bool).tril()
    mask[..., 3, 1] = False
    got = attention.varlen_attention_forward(mod, q, k, v, mask, scaling=0.5)[0]
    assert torch.equal(got, sdpa_attention_forward(mod, q, k, v, mask, scaling=0.5)[0])


def test_prefix_groups_apply_to_causal_calls_only():
    """``egt_prefix_groups`` blocks the language model's (causal) attention; a non-causal call (a vision tower's
    window, which transformers hands the same kwargs) runs as if there were none."""
    attention.register("reference")
    mod = torch.nn.Module()
    mod.is_causal = True
    groups = attention.prefix_groups(torch.tensor([[0, 0, 0, 0, 0, -1]]), torch.tensor([[0, 0, 1, 1, 2, -1]]))
    torch.manual_seed(4)
    q, k, v = (torch.randn(1, 2, 6, 4) for _ in range(3))
    grouped = attention.varlen_attention_forward(mod, q, k, v, None, scaling=0.5, egt_prefix_groups=groups)[0]
    plain = attention.varlen_attention_forward(mod, q, k, v, None, scaling=0.5)[0]  # one causal sequence
    assert not torch.allclose(grouped[0, :5], plain[0, :5]) and (grouped[0, 5] == 0).all()
    mod.is_causal = False  # a vision attention: the module says so, and its calls pass is_causal=False
    qw, kw, vw = (torch.randn(1, 2, 3, 4) for _ in range(3))  # a window of 3 tokens: the groups index up to 4
    want = attention.varlen_attention_forward(mod, qw, kw, vw, None, scaling=0.5, is_causal=False)[0]
    for causal in (False, None):
        got = attention.varlen_attention_forward(
            mod, qw, kw, vw, None, scaling=0.5, is_causal=causal, egt_prefix_groups=groups
        )[0]
        assert torch.equal(got, want)
    mod.is_causal = True  # a causal call over other rows than the groups': a clear error, not wrong indices
    with pytest.raises(ValueError, match=r"built for rows \(1, 6\).*query of 1 × 3"):
        attention.varlen_attention_forward(mod, qw, kw, vw, None, scaling=0.5, egt_prefix_groups=groups)


@pytest.mark.gpu
def test_torch_varlen_kernel_matches_reference_on_cuda():
    """The real kernel (bf16 on CUDA) against the reference on the same packed GQA inputs: bf16 tolerance
    (8 mantissa bits: ~4e-3 relative per element)."""
    if not attention.torch_varlen_available():
        pytest.skip("torch without torch.nn.attention.varlen")
    torch.manual_seed(0)
    q = torch.randn(300, 8, 64, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(300, 2, 64, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    cu = torch.tensor([0, 64, 100, 300], device="cuda", dtype=torch.int32)
    for causal in (False, True):
        got = attention._torch_kernel(q, k, v, cu, cu, 200, 200, 0.125, causal)
        ref = attention.reference_varlen(q.float(), k.float(), v.float(), cu, cu, 200, 200, 0.125, causal)
        torch.testing.assert_close(got.float(), ref, atol=2e-2, rtol=2e-2)
    # fewer queries than keys (decoding, the shared prompt pass): causal must align bottom-right
    cu_q = torch.tensor([0, 4, 5, 12], device="cuda", dtype=torch.int32)
    got = attention._torch_kernel(q[:12], k, v, cu_q, cu, 7, 200, 0.125, True)
    ref = attention.reference_varlen(q[:12].float(), k.float(), v.float(), cu_q, cu, 7, 200, 0.125, True)
    torch.testing.assert_close(got.float(), ref, atol=2e-2, rtol=2e-2)
