"""egt.sft.loss with ``model.liger``: the NLL through Liger's fused linear cross-entropy equals the chunked path's
(values and gradients, fp32), padded and packed, on the tiny Qwen2.5-VL; off, the chunked path runs untouched.

Liger's kernel is Triton (CUDA only), so these CPU tests put a pure-torch stand-in with its contract in place of
``egt.models.liger.fused_linear_cross_entropy``: ``(weight [V, H], input [N, H], target [N], bias=None) -> [N]``
fp32 per-token loss in nats with ``reduction="none"`` (liger-kernel 0.8.5
``transformers/fused_linear_cross_entropy.py`` ``LigerFusedLinearCrossEntropyLoss.forward``). The real kernel is
run by benchmarks/gpu_check.sh's ``liger`` part (bench_gpu_scale.py --liger, ``sft_fused_ce`` in its output)."""

import pytest
import torch
import torch.nn.functional as F
from sft_batches import sft_examples

from egt.data.encode import IGNORE, collate
from egt.models import liger
from egt.sft import loss as sft_loss
from egt.sft.loss import reduce_nll, sft_nll
from egt.sft.packing import pack_collate

# fp32: the stand-in's logits are one [N, V] matmul, the chunked path's [16, V] ones: the same dot products, in
# another blocking; log-softmax over V ~ 10^3 terms → ~1e-6 relative; 1e-5 leaves a margin.
RTOL = 1e-5


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model, pad, exs = sft_examples(tiny_model_dir)
    return model.eval(), pad, exs


@pytest.fixture
def stand_in(monkeypatch):
    """Liger's fused loss replaced by a pure-torch one with its signature; records every call's arguments."""
    calls = []

    def factory(ignore_index=-100, reduction="sum"):
        assert reduction == "none" and ignore_index == IGNORE

        def fn(weight, x, target, bias=None):
            calls.append((weight, x.shape, target.clone()))
            logits = x @ weight.T + (0 if bias is None else bias)  # [N, V]
            return F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none")  # [N]

        return fn

    monkeypatch.setattr(liger, "fused_linear_cross_entropy", factory)
    return calls


def _nll_and_grads(model, batch, **kw):
    nll, mask = sft_nll(model, batch, **kw)
    loss = reduce_nll(nll, mask, "token", float(mask.sum()), float((mask.sum(-1) > 0).sum()))
    params = [p for p in model.parameters() if p.requires_grad]
    return nll.detach(), mask, torch.autograd.grad(loss, params, allow_unused=True)


def _assert_same(a, b):
    (nll_a, mask_a, g_a), (nll_b, mask_b, g_b) = a, b
    assert torch.equal(mask_a, mask_b)
    assert nll_a.dtype == torch.float32 and bool((nll_a[~mask_a] == 0).all())
    torch.testing.assert_close(nll_a[mask_a], nll_b[mask_b], rtol=RTOL, atol=RTOL * float(nll_b.abs().max()))
    for x, y in zip(g_a, g_b):
        if y is None:
            assert x is None
            continue
        assert float((x - y).norm()) <= RTOL * float(y.norm()) + 1e-12, "gradient differs"


@pytest.mark.parametrize("budget", ["padded", None, "rows"])
def test_fused_loss_matches_the_chunked_path(tiny, stand_in, budget):
    model, pad, exs = tiny
    if budget == "padded":
        batch = collate(exs, pad, "right")
    else:
        lengths = sorted(len(e["input_ids"]) for e in exs)
        batch = pack_collate(exs, pad, None if budget is None else lengths[0] + lengths[1] + 1)
    chunked = _nll_and_grads(model, batch, chunk=16)
    assert not stand_in  # liger off: never called
    fused = _nll_and_grads(model, batch, chunk=16, liger=True)
    _assert_same(fused, chunked)
    ((weight, shape, target),) = stand_in  # one call: the target positions only, the head's own weight
    assert weight is model.get_output_embeddings().weight
    n = int(chunked[1].sum())
    assert shape == (n, model.config.text_config.hidden_size) and bool((target != IGNORE).all())


def test_padded_and_packed_fused_losses_agree(tiny, stand_in):
    """The packed NLL [R, W−1] is mapped back to the padded layout (egt.sft.packing.unpack) after the fused loss."""
    model, pad, exs = tiny
    padded = _nll_and_grads(model, collate(exs, pad, "right"), liger=True)
    packed = _nll_and_grads(model, pack_collate(exs, pad, None), liger=True)
    _assert_same(packed, padded)


def test_without_the_kernel_the_chunked_path_runs_bit_for_bit(tiny, monkeypatch):
    """liger=True where the kernel cannot run (CPU, or no liger-kernel: the factory gives None) or the head's weight
    is a ZeRO-3 partition: the chunked path, the same bits as liger=False."""
    model, pad, exs = tiny
    batch = collate(exs[:3], pad, "right")
    with torch.no_grad():
        off, mask_off = sft_nll(model, batch, chunk=16)
        assert liger.fused_linear_cross_entropy(reduction="none") is None  # this CPU machine
        on, mask_on = sft_nll(model, batch, chunk=16, liger=True)
        assert torch.equal(on, off) and torch.equal(mask_on, mask_off)

        def never(**kw):
            raise AssertionError("a ZeRO-3-partitioned head must not reach the fused kernel")

        monkeypatch.setattr(liger, "fused_linear_cross_entropy", never)
        weight = model.get_output_embeddings().weight
        weight.ds_id = 0  # what DeepSpeed ZeRO-3 marks its partitioned parameters with
        try:
            z3, _ = sft_nll(model, batch, chunk=16, liger=True)
        finally:
            del weight.ds_id
        assert torch.equal(z3, off)


def test_sft_module_passes_the_switch(tiny, stand_in):
    from egt.sft.module import SFTModule

    model, pad, exs = tiny
    for flag, calls in ((False, 0), (True, 1)):
        module = SFTModule(model, 1e-3, 0.0, 0.0, 1, chunk_size=16, liger=flag)
        module.training_step(collate(exs[:2], pad, "right"), 0)
        assert len(stand_in) == calls
    assert sft_loss.liger_kernels is liger  # the module attribute the stand-in replaces


@pytest.mark.gpu
def test_real_liger_kernel_matches_the_chunked_path_on_cuda():
    """The real Triton kernel (fp32 on CUDA: its chunks, the same maths) on a [N, H] · [V, H]ᵀ head with Qwen's
    vocabulary, against the chunked path: values and the input / weight gradients to fp32 matmul rounding
    (TF32 off; a sum over V = 152,064 terms → ~1e-5 relative)."""
    if liger.liger_version() is None:
        pytest.skip("liger-kernel is not installed (benchmarks/gpu_check.sh carries the wheel)")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    head = torch.nn.Linear(64, 152_064, bias=False, device="cuda")
    hidden = torch.randn(2, 40, 64, device="cuda", requires_grad=True)
    targets = torch.randint(0, 152_064, (2, 39), device="cuda")
    targets[0, :10] = IGNORE
    mask = targets != IGNORE
    out = {}
    for name, on in (("chunked", False), ("fused", True)):
        nll = sft_loss._nll(hidden, head, targets, mask, 16, on)
        (nll * mask).sum().backward()
        out[name] = (nll.detach(), hidden.grad.clone(), head.weight.grad.clone())
        hidden.grad, head.weight.grad = None, None
    for a, b in zip(out["fused"], out["chunked"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
