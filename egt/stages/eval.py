"""eval stage (paper §3.2, Table 1): judge accuracy of models on registered benchmarks.

Models: ``eval.model_path`` if set, else the models of the stages named in
``eval.models`` (sft always; rft, rl and others only when they are in ``stages``).
Benchmarks: ``eval.benchmarks`` (each must be there) + ``eval.optional_benchmarks``
(evaluated when ``<data_root>/<name>`` exists). One artifact per (model, benchmark,
eval settings) under ``<artifacts>/eval/<key>/``: ``journal.jsonl`` (resume),
``predictions.jsonl``, ``metrics.json``; a copy of each ``metrics.json`` goes to the
Hydra run dir (``eval/<model>/<benchmark>/``) so ``python -m egt.report <run dir>`` finds it.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig

from egt import distributed
from egt.artifacts import content_fingerprint, make_key
from egt.benchmarks import Benchmark, make
from egt.benchmarks.metrics import position_bias
from egt.config import to_container
from egt.data.prompt import template_key
from egt.utils.atomic import write_json_atomic
from egt.utils.fmt import pct
from egt.utils.io import Journal

log = logging.getLogger(__name__)
REQUIRES = ("data", "model", "sft", "rft", "rl")  # the stages this one may ask the pipeline for (egt.stages)
VERSION = 1
# eval settings that do not change what is generated or how it is scored (batch_size: greedy, and sampled
# draws come from per-(view, vote) streams, egt.eval.generation.row_seed; only floating-point batching
# effects remain, as for greedy)
NOT_IN_KEY = (
    "model_path",
    "model_label",
    "models",
    "benchmarks",
    "optional_benchmarks",
    "data_root",
    "batch_size",
    "position_bias",
)


def make_benchmark(spec: Any, cfg: DictConfig) -> Benchmark:
    """A benchmark of ``eval.benchmarks`` with eval's ``on_bad_sample``, ``limit`` and ``seed``
    (egt.benchmarks.make)."""
    return make(spec, cfg.eval.on_bad_sample, cfg.eval.limit, cfg.eval.seed)


def _benchmarks(cfg: DictConfig) -> list[Benchmark]:
    e = cfg.eval
    benches = [make_benchmark(s, cfg) for s in e.benchmarks]
    have = {b.name for b in benches}
    for spec in e.optional_benchmarks:
        bench = make_benchmark(spec, cfg)
        if bench.name in have:
            continue
        if e.data_root and (Path(e.data_root).expanduser() / bench.name).exists():
            benches.append(bench)
        else:
            log.info("[eval] %s: no data under eval.data_root=%s, skipped", bench.name, e.data_root)
    return benches


def _models(cfg: DictConfig, pipe: Any) -> list[dict[str, Any]]:
    e = cfg.eval
    if e.model_path:
        path = Path(e.model_path).expanduser().resolve()
        label = e.model_label or (path.parent.name if path.name == "model" else path.name)
        return [
            {"label": label, "path": str(path), "identity": {"path": str(path), "content": content_fingerprint(path)}}
        ]  # retrained in place: new
    stages = [str(s) for s in cfg.stages]
    out = []
    for name in e.models:
        if name != "sft" and name not in stages:
            continue
        r = pipe.get(str(name))
        out.append({"label": str(name), "path": r["model_path"], "identity": {"stage": name, "key": r["key"]}})
    if not out:
        raise ValueError(
            f"eval: no model to evaluate (eval.models={list(e.models)}, stages={stages}); "
            "set eval.model_path=/path/to/model"
        )
    return out


def _run_dir() -> Optional[Path]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # not under @hydra.main (tests, notebooks)
        return None


class _LazyJudge:
    """Loads the model on first use, so a fully reused evaluation never touches it."""

    def __init__(self, cfg: DictConfig, path: str) -> None:
        self.cfg, self.path, self.judge = cfg, path, None

    def get(self) -> Any:
        if self.judge is None:
            from egt.data.encode import ChatEncoder
            from egt.eval.runner import HFJudge
            from egt.models.resolve import load_for_inference

            model, processor = load_for_inference(self.path, self.cfg)
            model = model.to(distributed.device(self.cfg))  # this rank's GPU (views are sharded over ranks)
            e = self.cfg.eval
            encoder = ChatEncoder(
                processor,
                template=self.cfg.data.template,
                max_length=e.max_length,
                length_key="eval.max_length",
                skip_key="eval.on_bad_sample",
            )
            self.judge = HFJudge(model, encoder, e.max_new_tokens, e.temperature, e.seed, to_container(e.generation))
        return self.judge


def drop_default_decode(conf: dict[str, Any]) -> dict[str, Any]:
    """``conf`` (a stage's key settings) without ``generation.decode`` when it is ``dynamic`` (the default): keys
    of runs without the setting stay byte-for-byte those from before it existed. ``static`` and ``compiled``
    stay in: the same tokens in fp32 (tests), but a compiled step may round differently (bf16 on a GPU).

    >>> drop_default_decode({"generation": {"top_k": None, "decode": "dynamic"}})
    {'generation': {'top_k': None}}
    >>> drop_default_decode({"generation": {"decode": "compiled"}})
    {'generation': {'decode': 'compiled'}}
    """
    gen = conf.get("generation")
    if isinstance(gen, dict) and gen.get("decode", "dynamic") == "dynamic":
        gen.pop("decode", None)
    return conf


def key_conf(cfg: DictConfig, bench: Benchmark) -> dict[str, Any]:
    """What an eval key is made of: the benchmark, its files' fingerprint and the settings that change
    what is generated or scored. ``generation.decode`` only when not ``dynamic`` (:func:`drop_default_decode`).
    Sampled runs (temperature > 0) name their per-(view, vote) streams:
    their draws differ from the earlier batch-seeded ones; greedy keys are unchanged."""
    e = cfg.eval
    settings = {k: v for k, v in to_container(e).items() if k not in NOT_IN_KEY}
    settings["template"] = template_key(cfg.data.template)
    drop_default_decode(settings)
    from egt.models.resolve import pixel_budget

    settings.update(pixel_budget(cfg))  # only when set: keys without a budget are unchanged
    if e.temperature > 0:
        settings["sampling_streams"] = "per-view-vote"
    bench_id = {k: v for k, v in bench.describe().items() if k != "files"}
    return {"benchmark": bench_id, "fingerprint": bench.fingerprint(), "settings": settings}


def evaluate_one(
    cfg: DictConfig, pipe: Any, model: dict[str, Any], bench: Benchmark, items: list[dict], judge: _LazyJudge
) -> dict[str, Any]:
    from egt.eval.runner import evaluate

    e = cfg.eval
    conf = key_conf(cfg, bench)
    key = make_key("eval", conf, upstream={"model": json.dumps(model["identity"], sort_keys=True)}, version=VERSION)
    with pipe.store.open("eval", key, ranks="all") as art:
        if not art.reused:
            if distributed.world_size() == 1:
                metrics, records, info = evaluate(
                    bench,
                    items,
                    judge.get(),
                    Journal(art.path / "journal.jsonl"),
                    order=e.order,
                    votes=e.votes,
                    batch_size=e.batch_size,
                    on_bad_sample=e.on_bad_sample,
                    seed=e.seed,
                )
            else:
                merged = _evaluate_sharded(cfg, bench, items, judge, art.path)
                if merged is None:  # not rank 0: its views are journalled, rank 0 scores
                    art.finish({})
                    return {
                        "key": key,
                        "path": str(art.path),
                        "reused": False,
                        "summary": {},
                        "metrics_path": str(art.path / "metrics.json"),
                    }
                metrics, records, info = merged
            with open(art.path / "predictions.jsonl", "w", encoding="utf-8") as fh:
                for r in records:
                    fh.write(json.dumps(r, sort_keys=True) + "\n")
            result = {
                "key": key,
                "benchmark": {**bench.describe(), "fingerprint": conf["fingerprint"], "n_items": len(items)},
                "model": {k: model[k] for k in ("label", "path", "identity")},
                "eval_config": {**to_container(e), "template": cfg.data.template},
                "metrics": metrics,
                "run": info,
                "finished_at": time.time(),
            }
            write_json_atomic(art.path / "metrics.json", result)
            debiased = (
                ""
                if "order/debiased/overall" not in metrics
                else f", overall={metrics['overall']} debiased={metrics['order/debiased/overall']} "
                f"position consistency={metrics['order/position_consistency']}"
            )
            log.info(
                "[eval] %s on %s: %s=%s%s (%d items, %s generations/s)",
                model["label"],
                bench.name,
                bench.headline_key,
                metrics.get("headline"),
                debiased,
                len(items),
                info["generations_per_s"],
            )
            art.finish(
                {
                    "headline": metrics.get("headline"),
                    "overall": metrics.get("overall"),
                    "debiased": metrics.get("order/debiased/overall"),
                    "position_consistency": metrics.get("order/position_consistency"),
                    "parse_failures": metrics.get("parse_failures"),
                    "n": metrics.get("n"),
                    "generations_per_s": info["generations_per_s"],
                },
                {"config": conf},
            )
    if distributed.is_main():
        warn_position_bias(cfg, f"{model['label']} on {bench.name}", art.path / "metrics.json")
        if owns_model_dir(model["identity"]):
            from egt.judge.model_card import record_evaluation

            try:
                record_evaluation(model["path"], json.loads((art.path / "metrics.json").read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:  # the card is a convenience: never fail (or hang) the eval for it
                log.warning("[eval] model card of %s not updated: %s", model["path"], exc)
    run_dir = _run_dir()
    if run_dir is not None:
        dst = run_dir / "eval" / model["label"] / bench.name / "metrics.json"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(art.path / "metrics.json", dst)
    return {
        "key": key,
        "path": str(art.path),
        "reused": art.reused,
        "summary": art.summary,
        "metrics_path": str(art.path / "metrics.json"),
    }


def warn_position_bias(cfg: DictConfig, what: str, metrics_path: Path) -> list[str]:
    """Log (also for a reused artifact) why the judge's numbers in ``metrics_path`` depend on the
    response order, by ``eval.position_bias``; returns the reasons (none: not biased, or order=official)."""
    m = json.loads(metrics_path.read_text(encoding="utf-8"))["metrics"]
    reasons = position_bias(m, **to_container(cfg.eval.position_bias))
    if reasons:
        off, deb = m.get("overall"), m.get("order/debiased/overall")
        log.warning(
            "[eval] position-biased judge: %s: %s. Official overall %s vs position-debiased %s "
            "(mean over both orders); Table 1 marks it with a dagger",
            what,
            "; ".join(reasons),
            _pct(off),
            _pct(deb),
        )
    return reasons


def _pct(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _evaluate_sharded(
    cfg: DictConfig, bench: Benchmark, items: list[dict], judge: _LazyJudge, out: Path
) -> Optional[tuple[dict, list[dict], dict]]:
    """Each rank generates its share of the views; rank 0 merges every journal and scores them."""
    from egt.eval.runner import generate_shard, merge_shards

    e = cfg.eval
    info = generate_shard(
        bench,
        items,
        judge.get(),
        out,
        distributed.rank(),
        distributed.world_size(),
        order=e.order,
        votes=e.votes,
        batch_size=e.batch_size,
        on_bad_sample=e.on_bad_sample,
        seed=e.seed,
    )
    infos = distributed.all_gather(info)  # also: every journal is complete
    if not distributed.is_main():
        return None
    return merge_shards(bench, items, out, infos, order=e.order, votes=e.votes, seed=e.seed)


def run(cfg: DictConfig, pipe: Any) -> dict[str, Any]:
    models, benches = _models(cfg, pipe), _benchmarks(cfg)
    loaded = []
    for bench in benches:
        if bench.source_stage and not bench.path:  # e.g. the synthetic bench: the data stage's bench split
            source = pipe.get(bench.source_stage)
            bench.use_dataset(source["dataset_path"], source["key"])
            if (source.get("splits") or {}).get(getattr(bench, "split", None), {}).get("n") == 0:
                log.warning(
                    "[eval] %s: the data set has no %s split (data=%s): not evaluated; the real benchmarks "
                    "are evaluated when their files are under eval.data_root (docs/evaluation.md)",
                    bench.name,
                    bench.split,
                    cfg.data.name,
                )
                continue
        loaded.append((bench, bench.load(cfg.eval.data_root)))
        if bench.skipped:
            log.warning(
                "[eval] %s: skipped %d bad rows %s", bench.name, sum(bench.skipped.values()), dict(bench.skipped)
            )
    results: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    for model in models:
        judge = _LazyJudge(cfg, model["path"])
        for bench, items in loaded:
            r = evaluate_one(cfg, pipe, model, bench, items, judge)
            results[f"{model['label']}/{bench.name}"] = r
            summary[f"{model['label']}/{bench.name}"] = r["summary"].get("headline")
    # the number a sweeper optimises: the last model (rl if evaluated) on the synthetic / first benchmark
    first = next((b for b, _ in loaded if b.name == "synthetic"), loaded[0][0] if loaded else None)
    if first is not None:
        summary["headline"] = summary[f"{models[-1]['label']}/{first.name}"]
    keys = sorted(r["key"] for r in results.values())
    return {
        "key": make_key("eval", keys, version=VERSION),
        "path": str(pipe.store.root / "eval"),
        "reused": all(r["reused"] for r in results.values()),
        "summary": summary,
        "results": results,
    }


def summary_line(summary: dict[str, Any]) -> str:
    """The stage's line in the end-of-run summary (egt.pipeline.format_summary): each model's headline
    metric on each benchmark."""
    return "; ".join(f"{k} {pct(v)}" for k, v in summary.items() if "/" in k and isinstance(v, (int, float)))


def owns_model_dir(identity: dict[str, Any]) -> bool:
    """Whether the eval stage may write into an evaluated model's directory (its judge's ``egt_evals.json`` and
    model card): only a judge the pipeline trained into the artifact store. A model given by path
    (``eval.model_path``; ``sft.model_path``, whose key is ``external-<fingerprint>``) is keyed by its content,
    so writing into it would change its key, and everything downstream of it, on every run.

    >>> owns_model_dir({"stage": "sft", "key": "ab12"}), owns_model_dir({"stage": "sft", "key": "external-ff"})
    (True, False)
    >>> owns_model_dir({"path": "/ckpt", "content": "ff"})
    False
    """
    return "stage" in identity and not str(identity.get("key", "")).startswith("external-")
