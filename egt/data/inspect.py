"""Look at a data configuration before training on it: ``python -m egt.data.inspect data=… [n=3]``.

Composes the config as ``train.py`` does (same overrides), builds the three splits exactly as the data
stage would, with bad rows counted instead of raised, and prints per split and per source: rows, kept,
excluded by design (ties, multi-turn battles, video rows, prompts without a rated pair) and skipped as bad,
each by reason, label balance, categories, the first ``n`` samples rendered (id, label, image
sizes, the judge prompt's user text in ``data.template``), and the training pools' overlap with each
public benchmark found under ``eval.data_root``. With ``data.mix``, each source's rows before and after
mixing. Nothing is written to the artifact store.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Any

from hydra import compose, initialize_config_dir

import egt.config  # noqa: F401  (registers the typed schemas)
from egt.cli import (
    CONF_DIR,
    debug_requested,
    rewrite_group_args,
    rewrite_model_path_args,
    user_error_types,
    user_message,
)
from egt.config import validate
from egt.data.prompt import build_user_text

SPLITS = ("sft_pool", "rl_pool", "bench")


def _compose(overrides: list[str]) -> Any:
    overrides = rewrite_group_args(rewrite_model_path_args(["inspect", *overrides]))[1:]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


def _only_data(cfg: Any) -> Any:
    """The config as a run of the data stage alone: what the other stages would need (a teacher, a model's
    path) is not this command's business."""
    cfg = cfg.copy()
    cfg.stages = ["data"]
    return cfg


def report(cfg: Any, n: int = 3, width: int = 700) -> str:
    """The text :func:`main` prints, for a composed config."""
    from egt.data.assemble import build

    asked = cfg.data.on_bad_sample
    cfg.data.on_bad_sample = "skip"  # count every bad row instead of stopping at the first
    dsd, per_source = build(cfg)
    out = [
        f"data={cfg.data.name} (template {cfg.data.template}; on_bad_sample={asked}"
        + (": the first bad row would stop a run; rows excluded by design never do)" if asked == "error" else ")")
    ]
    for split in SPLITS:
        ds = dsd[split]
        labels = Counter(ds["label"])
        out.append(
            f"\n== {split}: {len(ds)} samples, label 1: {labels.get(1, 0)}, label 2: {labels.get(2, 0)}, "
            f"categories {dict(Counter(ds['category']))}"
        )
        for name, c in (per_source.get(split) or {}).items():
            excluded, skipped = (
                ", ".join(f"{k}: {v}" for k, v in sorted((c.get(kind) or {}).items())) or "none"
                for kind in ("excluded", "skipped")
            )
            left = (
                f"{c['unmixed']}, mixed to {c['final']} ({c['repeated']} of them repeats)"
                if "unmixed" in c
                else f"{c['final']}"
            )
            out.append(
                f"   source {name}: {c['rows']} rows, {c['kept']} kept, excluded {excluded}, skipped {skipped}; "
                "after duplicates and "
                f"contamination {left} (label 1: {c['label_1']}, label 2: {c['label_2']})"
            )
        for row in ds.select(range(min(n, len(ds)))):
            sizes = ", ".join(f"{im.width}×{im.height}" for im in row["images"])
            text = build_user_text(row["query"], row["response_1"], row["response_2"], cfg.data.template)
            cut = text if len(text) <= width else text[:width] + f"… [{len(text) - width} more characters]"
            out.append(
                f"\n-- {row['id']} (label {row['label']}, {row['category']}, source {row['source']}, "
                f"images {sizes}, meta {json.loads(row['meta']) if row['meta'] else {}})\n{cut}"
            )
    dup = per_source.get("duplicates")
    if dup is not None:
        out.append(f"\nduplicates dropped: inside pools {dup['inside']}, SFT pairs also in the RL pool {dup['across']}")
    cont = per_source.get("contamination")
    if cont is None:
        out.append(
            "\noverlap with the public benchmarks: not checked (data.contamination_benchmarks is empty, "
            "or the synthetic world)"
        )
    else:
        out.append("\noverlap with the public benchmarks (" + ("dropped" if cont["dropped"] else "kept") + "):")
        for name, status in cont["benchmarks"].items():
            out.append(f"   {name}: " + (status if isinstance(status, str) else f"{status['items']} items indexed"))
        for split in ("sft_pool", "rl_pool"):
            found = cont[split]
            out.append(f"   {split}: {found['rows']} samples are benchmark items {found['overlap'] or ''}".rstrip())
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    n = 3
    overrides = []
    for a in args:
        if a.startswith("n="):
            n = int(a[2:])
        else:
            overrides.append(a)
    try:
        cfg = _compose(overrides)
        validate(_only_data(cfg))
        text = report(cfg, n)
    except user_error_types() as exc:  # as train.py: a mistake the user can fix is one line, no traceback
        if debug_requested():
            raise
        print(user_message(exc), file=sys.stderr)
        raise SystemExit(1) from exc
    print(text)


if __name__ == "__main__":
    main()
