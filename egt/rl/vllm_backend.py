"""vLLM rollouts (``rl/backend=vllm``): generation by a vLLM engine colocated with training.

vLLM is an optional extra in its **own environment**: vllm 0.33 pins ``torch==2.14`` and
``transformers<5.21``, while egt's default environment has torch 2.13 / transformers 5.23
(``pip install "egt[vllm]"`` into a fresh venv resolves torch and transformers to vLLM's pins;
the egt code paths used are the same). Nothing here imports vllm until the first rollout.

Each rank builds one engine from the policy's own directory (``model.name_or_path``) with
``gpu_memory_utilization`` of its GPU, and before every rollout (every ``sync_every`` steps)
loads the training model's current weights into it (:meth:`VLLMRollout.sync`), so the rollouts
are the current policy's, as with HF ``generate``. Under ZeRO-3 the parameters are gathered
one at a time first. Prompts are built from the schema rows (chat template text + PIL images,
vLLM expands the image placeholders itself); sampling is from the full distribution
(``top_k=-1, top_p=1``) at the RL temperature, so ``log π_old`` recomputed by the training model
is the sampling policy's up to kernel numerics.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Sequence

import torch

from egt import distributed
from egt.data.encode import ChatEncoder
from egt.rl.rollout import RolloutBackend
from egt.utils.images import to_rgb

log = logging.getLogger(__name__)


class VLLMEngine:
    """The few calls egt makes on a ``vllm.LLM`` (tests substitute a fake with the same methods)."""

    def __init__(self, model_dir: str, **engine_kwargs: Any) -> None:
        try:
            import vllm
        except ImportError as e:
            raise ImportError(
                "rl/backend=vllm needs vLLM in a separate environment (vllm 0.33 pins torch==2.14, "
                "transformers<5.21): pip install 'egt[vllm]' there, or use rl/backend=hf"
            ) from e
        self._vllm = vllm
        self.llm = vllm.LLM(model=model_dir, **engine_kwargs)

    def sampling_params(self, **kw: Any) -> Any:
        return self._vllm.SamplingParams(**kw)

    def generate(self, prompts: list[dict[str, Any]], params: Any) -> list[list[int]]:
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        return [list(o.outputs[0].token_ids) for o in outs]

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        weights = list(weights)
        engine = self.llm.llm_engine
        executor = getattr(engine, "model_executor", None)
        if executor is not None and hasattr(executor, "driver_worker"):  # in-process worker (V0 layout)
            executor.driver_worker.model_runner.model.load_weights(weights)
        else:  # V1: the worker may live in another process; ask it to load
            self.llm.collective_rpc(lambda self_, w=weights: self_.model_runner.model.load_weights(w))
        if hasattr(self.llm, "reset_prefix_cache"):
            self.llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights


class VLLMRollout(RolloutBackend):
    """Rollouts with vLLM; weights synced from the training model (see the module docstring)."""

    generates_with_policy = False  # vLLM's own copy of the weights: nothing to gather around complete()

    def __init__(
        self,
        gpu_memory_utilization: float = 0.3,
        tensor_parallel_size: int = 1,
        max_model_len: int = 4096,
        dtype: str = "bfloat16",
        enforce_eager: bool = False,
        sync_every: int = 1,
        max_images_per_prompt: int = 1,
        engine: Any = None,
    ) -> None:
        if sync_every < 1:
            raise ValueError(f"rl.backend.sync_every={sync_every} must be >= 1 (1 = every rollout, as the paper)")
        self.engine_kwargs = {
            "gpu_memory_utilization": gpu_memory_utilization,
            "tensor_parallel_size": tensor_parallel_size,
            "max_model_len": max_model_len,
            "dtype": dtype,
            "enforce_eager": enforce_eager,
            "limit_mm_per_prompt": {"image": max_images_per_prompt},
        }
        self.sync_every = sync_every
        self.engine = engine
        self.synced_step: int | None = None

    def _get_engine(self, model: Any) -> Any:
        if self.engine is None:
            path = getattr(model, "name_or_path", None) or getattr(model.config, "_name_or_path", None)
            if not path:
                raise ValueError(
                    "rl/backend=vllm builds its engine from the policy's model directory, but the "
                    "model has no name_or_path"
                )
            kw = dict(self.engine_kwargs)
            if distributed.world_size() > 1:  # one engine per training rank, inside torchrun's processes (as TRL)
                kw.update(distributed_executor_backend="external_launcher", seed=distributed.rank())
            log.info("[rl] starting vLLM on %s (%s)", path, kw)
            self.engine = VLLMEngine(str(path), **kw)
        return self.engine

    def sync(self, model: Any, step: int) -> None:
        """Load the training model's weights into the engine (every ``sync_every`` rollouts)."""
        engine = self._get_engine(model)
        if self.synced_step is not None and step - self.synced_step < self.sync_every:
            return
        engine.load_weights(_full_weights(model))
        self.synced_step = step

    def sampling_kwargs(
        self, encoder: ChatEncoder, model: Any, max_new_tokens: int, temperature: float
    ) -> dict[str, Any]:
        from egt.models.loader import multimodal_token_ids
        from egt.rl.rollout import stop_ids

        kw: dict[str, Any] = {
            "n": 1,
            "max_tokens": max_new_tokens,
            "stop_token_ids": stop_ids(model, encoder),
            "skip_special_tokens": False,
        }
        if temperature > 0:
            kw.update(temperature=temperature, top_k=-1, top_p=1.0)
        else:
            kw.update(temperature=0.0)
        suppress = multimodal_token_ids(encoder.processor)
        if suppress:  # an untrained policy can emit <|image_pad|>, which breaks the re-scoring forward
            kw["logit_bias"] = {int(i): -100.0 for i in suppress}
        return kw

    @staticmethod
    def prompts(encoder: ChatEncoder, samples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """vLLM inputs: the chat-template text (one placeholder per image) and the PIL images."""
        out = []
        for s in samples:
            images = [to_rgb(im) for im in (s.get("images") or [])]
            item: dict[str, Any] = {"prompt": encoder.prompt_text(s)}
            if images:
                item["multi_modal_data"] = {"image": images if len(images) > 1 else images[0]}
            out.append(item)
        return out

    def complete(
        self,
        model: Any,
        encoder: ChatEncoder,
        prompt_batch: dict[str, torch.Tensor],
        max_new_tokens: int,
        temperature: float,
        samples: Sequence[dict[str, Any]] | None = None,
        synced_gpus: bool = False,  # never passed: the engine has its own copy of the weights
    ) -> torch.Tensor:
        if samples is None:
            raise ValueError("VLLMRollout needs the schema rows behind the prompt batch (samples=...)")
        engine = self._get_engine(model)
        params = engine.sampling_params(**self.sampling_kwargs(encoder, model, max_new_tokens, temperature))
        ids = engine.generate(self.prompts(encoder, samples), params)
        return pad_right(ids, encoder.tokenizer.pad_token_id, prompt_batch["input_ids"].device)


def pad_right(ids: Sequence[Sequence[int]], pad_id: int, device: Any = "cpu") -> torch.Tensor:
    """Ragged completions → [B, L] padded with ``pad_id`` (L = the longest, at least 1).

    >>> pad_right([[5, 6], [7]], 0).tolist()
    [[5, 6], [7, 0]]
    """
    length = max([len(x) for x in ids] + [1])
    out = torch.full((len(ids), length), pad_id, dtype=torch.long)
    for i, x in enumerate(ids):
        out[i, : len(x)] = torch.tensor(list(x), dtype=torch.long)
    return out.to(device)


def _full_weights(model: Any) -> Iterable[tuple[str, torch.Tensor]]:
    """(name, tensor) of the whole model; ZeRO-3-partitioned parameters are gathered one at a time."""
    for name, p in model.named_parameters():
        if hasattr(p, "ds_id"):  # a DeepSpeed ZeRO-3 partition
            import deepspeed

            with deepspeed.zero.GatheredParameters([p]):
                yield name, p.detach().clone()
        else:
            yield name, p.detach()
    yield from ((name, b.detach()) for name, b in model.named_buffers())
