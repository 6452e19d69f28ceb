"""eval.order=both (the default) on the three public formats' fixture rows, through the eval stage and
Table 1, with a judge that always answers "1" (hand-worked values) and one that is always right.

The fixture (tests/helpers/bench_samples.public_benchmarks): VL-RewardBench shows RLHF-V-1 and
mmmu_2 swapped and wildvision-battle_3 as stored (seeded, eval.seed=0); Multimodal RewardBench's
better response is Output1, Output2, Output1 (shown as stored); MM-RLHF-RewardBench shows the chosen
response first (groups g1: two pairs, g2: one).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from bench_samples import public_benchmarks
from hydra import compose, initialize_config_dir

import egt.config  # noqa: F401  (registers the schema)
from egt.pipeline import Pipeline
from egt.report.__main__ import write_report
from egt.stages import eval as eval_stage

CONF = Path(__file__).resolve().parents[3] / "conf"
BENCHES = "[vl_rewardbench,multimodal_rewardbench,mm_rlhf_rewardbench]"


class Constant:
    """Always "Response 1", whatever is shown."""

    def prepare(self, sample):
        return sample

    def __call__(self, batch):
        return ["<think>The first.</think><answer>1</answer>" for _ in batch]


class Oracle(Constant):
    """Always the better response as shown."""

    def __call__(self, batch):
        return [f"<think>Compared.</think><answer>{s['label']}</answer>" for s in batch]


@pytest.fixture(scope="module")
def bench_root(tmp_path_factory):
    return public_benchmarks(tmp_path_factory.mktemp("benchmarks"))


def run_eval(art: Path, bench_root: Path, label: str, judge, monkeypatch, *overrides: str) -> None:
    """The eval stage on a stand-in model directory (its content names the judge), judged by ``judge``."""
    model = art.parent / f"models/{label}"
    model.mkdir(parents=True, exist_ok=True)
    (model / "config.json").write_text(json.dumps({"judge": label}))
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "stages=[eval]",
                f"paths.artifacts={art}",
                f"eval.model_path={model}",
                f"eval.model_label={label}",
                f"eval.benchmarks={BENCHES}",
                "eval.optional_benchmarks=[]",
                f"eval.data_root={bench_root}",
                *overrides,
            ],
        )
    egt.config.validate(cfg)
    monkeypatch.setattr(eval_stage._LazyJudge, "get", lambda self: judge)
    Pipeline(cfg).run()


def metrics_of(art: Path, label: str) -> dict[str, dict]:
    out = {}
    for path in art.glob("eval/*/metrics.json"):
        data = json.loads(path.read_text())
        if data["model"]["label"] == label:
            out[data["benchmark"]["name"]] = data["metrics"]
    return out


def test_constant_judge_official_debiased_consistency_warning_and_dagger(bench_root, tmp_path, monkeypatch, caplog):
    art = tmp_path / "artifacts"
    with caplog.at_level(logging.WARNING, logger="egt"):
        run_eval(art, bench_root, "always-1", Constant(), monkeypatch)
    m = metrics_of(art, "always-1")
    vl, mmrb, mmrlhf = m["vl_rewardbench"], m["multimodal_rewardbench"], m["mm_rlhf_rewardbench"]
    # official, as the authors score it: VL-RewardBench shows only wildvision-battle_3's better response first
    assert vl["overall"] == pytest.approx(1 / 3) and vl["macro"] == pytest.approx(1 / 3) == vl["headline"]
    assert (vl["category/general"], vl["category/hallucination"], vl["category/reasoning"]) == (1.0, 0.0, 0.0)
    assert mmrb["overall"] == pytest.approx(2 / 3) and mmrb["category/safety/bias"] == 0.0  # Output1, Output2, Output1
    assert mmrlhf["overall"] == 1.0 and mmrlhf["acc_plus"] == 1.0  # chosen first: a constant "1" is always right
    for bench in (vl, mmrb, mmrlhf):
        assert bench["order/debiased/overall"] == 0.5  # right in exactly one order of each pair
        assert bench["order/position_consistency"] == 0.0 and bench["order/pairs"] == 3
        assert bench["order/chosen_first/accuracy"] == 1.0 and bench["order/chosen_second/accuracy"] == 0.0
        assert bench["order/first_minus_second"] == 1.0
    assert vl["order/swapped/overall"] == pytest.approx(2 / 3) and mmrb["order/swapped/overall"] == pytest.approx(1 / 3)
    assert mmrlhf["order/swapped/overall"] == 0.0 and mmrlhf["order/debiased/acc_plus"] == 0.5
    assert vl["order/debiased/macro"] == 0.5
    warnings = [r.getMessage() for r in caplog.records if "position-biased judge" in r.getMessage()]
    assert len(warnings) == 3 and all(
        "position consistency 0.000 < 0.800" in w and "gap 1.000 > 0.100" in w for w in warnings
    )
    assert any(
        "always-1 on mm_rlhf_rewardbench" in w and "Official overall 100.00% vs position-debiased 50.00%" in w
        for w in warnings
    )

    caplog.clear()  # a reused evaluation warns again
    with caplog.at_level(logging.INFO, logger="egt"):
        run_eval(art, bench_root, "always-1", Constant(), monkeypatch)
    assert "reusing" in caplog.text and caplog.text.count("position-biased judge") == 3

    run_eval(art, bench_root, "oracle", Oracle(), monkeypatch)
    for bench in metrics_of(art, "oracle").values():
        assert bench["overall"] == bench["order/debiased/overall"] == bench["order/position_consistency"] == 1.0
    write_report(art, tmp_path / "report")
    md = (tmp_path / "report" / "table1.md").read_text()
    assert (
        "| Model | VL-Reward | VL-Reward deb. | VL-Reward cons. | Multimodal | Multimodal deb. | "
        "Multimodal cons. | MM-RLHF | MM-RLHF deb. | MM-RLHF cons. | Avg. | Avg. deb. | Avg. Gain |"
    ) in md
    assert (
        "| always-1 | 33.33† | 50.00 | 0.00 | 66.67† | 50.00 | 0.00 | **100.00**† | 50.00 | 0.00 | 66.67 | 50.00 |"
    ) in md
    assert "| oracle | **100.00** | **100.00** | **100.00** | **100.00** | **100.00** | **100.00** | **100.00** |" in md
    assert "† position-biased judge on this benchmark (position consistency < 80%" in md
    tex = (tmp_path / "report" / "table1.tex").read_text()
    assert "always-1 & 33.33$^\\dagger$ & 50.00 & 0.00 & 66.67$^\\dagger$" in tex


def test_order_official_halves_the_generations_and_checks_nothing(bench_root, tmp_path, monkeypatch, caplog):
    art = tmp_path / "artifacts"
    with caplog.at_level(logging.WARNING, logger="egt"):
        run_eval(art, bench_root, "always-1", Constant(), monkeypatch, "eval.order=official")
    mmrlhf = metrics_of(art, "always-1")["mm_rlhf_rewardbench"]
    assert mmrlhf["overall"] == 1.0 and not any(k.startswith("order/") for k in mmrlhf)
    assert "position-biased" not in caplog.text
    (ev,) = [
        p.parent
        for p in art.glob("eval/*/metrics.json")
        if json.loads(p.read_text())["benchmark"]["name"] == "mm_rlhf_rewardbench"
    ]
    assert len((ev / "journal.jsonl").read_text().splitlines()) == 3  # one view per pair
