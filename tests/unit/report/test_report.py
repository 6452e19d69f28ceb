"""Report tables from hand-written metrics.json files (golden Markdown, LaTeX content)."""

from __future__ import annotations

import json

import pytest

from egt.report.__main__ import main, write_report
from egt.report.results import find_results
from egt.report.table1 import table1
from egt.report.tables import Column, build_table, to_latex, to_markdown

VL_COLS = [
    ["category/reasoning", "Reasoning"],
    ["category/hallucination", "Hallu."],
    ["category/general", "General"],
    ["overall", "Overall"],
    ["macro", "Macro"],
]


def write(path, key, label, bench, metrics, columns=VL_COLS, **eval_config):
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.json").write_text(
        json.dumps(
            {
                "key": key,
                "benchmark": {"name": bench, "version": 1, "columns": columns},
                "model": {"label": label, "path": f"/m/{label}", "identity": {"stage": label, "key": f"k{label}"}},
                "eval_config": {"votes": 1, "temperature": 0.0, **eval_config},
                "metrics": metrics,
                "finished_at": 1.0,
            }
        )
    )


@pytest.fixture
def run_dir(tmp_path):
    vl = {
        "category/reasoning": 0.6,
        "category/hallucination": 0.7,
        "category/general": 0.5,
        "overall": 0.65,
        "macro": 0.6,
        "parse_failure_rate": 0.02,
        "strict/overall": 0.64,
    }
    write(tmp_path / "eval/sft/vl", "a1", "sft", "vl_rewardbench", vl)
    write(
        tmp_path / "eval/rl/vl",
        "a2",
        "rl",
        "vl_rewardbench",  # eval.order=both, not position-biased
        {
            **vl,
            "category/general": 0.55,
            "overall": 0.7,
            "macro": 0.65,
            "order/position_consistency": 0.8,
            "order/debiased/overall": 0.69,
            "order/chosen_first/accuracy": 0.74,
            "order/chosen_second/accuracy": 0.64,
        },
    )
    write(
        tmp_path / "eval/sft/mm",
        "a3",
        "sft",
        "mm_rlhf_rewardbench",
        {"overall": 0.5, "acc_plus": 0.25},
        columns=[["overall", "Acc"], ["acc_plus", "Acc+"]],
    )  # eval.order=official
    biased = {
        "overall": 0.6,
        "acc_plus": 0.5,
        "order/position_consistency": 0.6,
        "order/debiased/overall": 0.5,
        "order/chosen_first/accuracy": 0.6,
        "order/chosen_second/accuracy": 0.4,
    }  # both limits crossed: †
    write(
        tmp_path / "eval/rl/mm",
        "a4",
        "rl",
        "mm_rlhf_rewardbench",
        biased,
        columns=[["overall", "Acc"], ["acc_plus", "Acc+"]],
    )
    write(
        tmp_path / "copy/eval/rl/mm",
        "a4",
        "rl",
        "mm_rlhf_rewardbench",
        biased,
        columns=[["overall", "Acc"], ["acc_plus", "Acc+"]],
    )  # same key: a copy (run dir vs artifacts)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "metrics.json").write_text('{"loss": 1}')  # not an eval result
    return tmp_path


TABLE1 = """\
**Table 1: overall accuracy (%) per benchmark, official (as the benchmark's authors order the responses) and \
position-debiased (deb., the mean over both orders) with position consistency (cons.); Avg. Gain over sft.**

| Model | VL-Reward | VL-Reward deb. | VL-Reward cons. | MM-RLHF | MM-RLHF deb. | MM-RLHF cons. | Avg. | Avg. deb. \
| Avg. Gain |
|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|
| rl | **70.00** | 69.00 | 80.00 | **60.00**† | 50.00 | 60.00 | **65.00** | 59.50 | ↑7.50 |
| sft | 65.00 | – | – | 50.00 | – | – | 57.50 | – | – |

Avg. over VL-Reward, MM-RLHF; a row missing one has none.
cons.: the fraction of pairs whose verdict picks the same response in both orders; – where a run used \
eval.order=official.
† position-biased judge on this benchmark (position consistency < 80% or accuracy with the better response first \
vs second more than 10 points apart): its official number depends on the order the authors show the responses in; \
the debiased column is the mean over both orders."""


def test_table1_golden_markdown(run_dir, caplog):
    results = find_results(run_dir)
    assert len(results) == 4
    assert to_markdown(table1(results)) == TABLE1  # rl's VL gap 0.74 - 0.64 is at the limit: not marked
    assert "rl on mm_rlhf_rewardbench is position-biased (position consistency 0.600 < 0.800" in caplog.text


def test_table1_baseline_and_latex(run_dir):
    t = table1(find_results(run_dir), baseline="rl")
    tex = to_latex(t, label="tab:t1")
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex and "\\label{tab:t1}" in tex
    assert " & \\multicolumn{3}{c}{VL-Reward} & \\multicolumn{3}{c}{MM-RLHF} & \\multicolumn{2}{c}{Avg.} &  \\\\" in tex
    assert "\\cmidrule(lr){2-4} \\cmidrule(lr){5-7} \\cmidrule(lr){8-9}" in tex
    assert "Model & Off. & Deb. & Cons. & Off. & Deb. & Cons. & Off. & Deb. & Avg. Gain \\\\" in tex
    assert "sft & 65.00 & -- & -- & 50.00 & -- & -- & 57.50 & -- & $\\downarrow$7.50 \\\\" in tex
    assert (
        "rl & \\textbf{70.00} & 69.00 & 80.00 & \\textbf{60.00}$^\\dagger$ & 50.00 & 60.00 & \\textbf{65.00} & "
        "59.50 & -- \\\\" in tex
    )
    assert (
        "\\par\\footnotesize $^\\dagger$ position-biased judge on this benchmark (position consistency $<$ 80\\%"
    ) in tex
    with pytest.raises(KeyError, match="not a row"):
        table1(find_results(run_dir), baseline="gpt")


def test_table1_position_bias_limits_from_the_command_line_or_the_run(run_dir):
    md = to_markdown(table1(find_results(run_dir), min_consistency=0.5, max_gap=0.25))
    assert "†" not in md and "| rl | **70.00** | 69.00 | 80.00 | **60.00** | 50.00 |" in md
    write(
        run_dir / "eval/rl/vl",
        "a2",
        "rl",
        "vl_rewardbench",  # its run asked for tighter limits
        {
            "overall": 0.7,
            "order/position_consistency": 0.8,
            "order/debiased/overall": 0.69,
            "order/chosen_first/accuracy": 0.74,
            "order/chosen_second/accuracy": 0.64,
        },
        position_bias={"min_consistency": 0.9, "max_gap": 0.05},
    )
    md = to_markdown(table1(find_results(run_dir)))
    assert "| rl | **70.00**† |" in md and "beyond its run's eval.position_bias" in md  # two sets of limits
    assert "| rl | **70.00** |" in to_markdown(table1(find_results(run_dir), min_consistency=0.8, max_gap=0.2))


def test_table1_without_order_both_is_as_before(run_dir):
    for path in run_dir.rglob("metrics.json"):
        data = json.loads(path.read_text())
        if "metrics" in data:
            data["metrics"] = {k: v for k, v in data["metrics"].items() if not k.startswith("order/")}
            path.write_text(json.dumps(data))
    md = to_markdown(table1(find_results(run_dir)))
    assert (
        "| Model | VL-Reward | MM-RLHF | Avg. | Avg. Gain |" in md
        and "| rl | **70.00** | **60.00** | **65.00** |" in md
    )
    assert "deb." not in md and "†" not in md
    assert "\\multicolumn" not in to_latex(table1(find_results(run_dir)))


def test_write_report_category_and_diagnostics_tables(run_dir, tmp_path):
    out = tmp_path / "rep"
    assert main([str(run_dir), "--out", str(out)]) == 0
    cats = (out / "vl_rewardbench_categories.md").read_text()
    assert "| Model | Reasoning | Hallu. | General | Overall | Macro |" in cats
    assert "| rl | **60.00** | **70.00** | **55.00** | **70.00** | **65.00** |" in cats  # ties: both bold
    assert "| sft | **60.00** | **70.00** | 50.00 | 65.00 | 60.00 |" in cats
    diag = (out / "vl_rewardbench_diagnostics.md").read_text()
    assert "| Model | Parse fail. | Strict | Debiased | Chosen 1st | Chosen 2nd | Consistency |" in diag
    assert "| sft | **2.00** | **64.00** | – | – | – | – |" in diag
    assert "| MM-RLHF | MM-RLHF deb. | MM-RLHF cons." in (out / "table1.md").read_text()
    assert "\\textbf{60.00}$^\\dagger$" in (out / "table1.tex").read_text()
    assert "| Model | Acc | Acc+ |" in (out / "mm_rlhf_rewardbench_categories.md").read_text()
    assert (out / "mm_rlhf_rewardbench_categories.tex").read_text().count("\\textbf{") == 2
    assert (
        "| Model | Debiased | Chosen 1st | Chosen 2nd | Consistency |"
        in (  # only the order=both ones
            out / "mm_rlhf_rewardbench_diagnostics.md"
        ).read_text()
    )
    assert "Table 1" in (out / "report.md").read_text()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no eval metrics.json"):
        write_report(tmp_path / "empty")


def test_generic_table_mean_sd_over_seeds_and_sections():
    rows = [
        ("entropy", [{"overall": 0.7}, {"overall": 0.8}], "Selection"),
        ("random", [{"overall": 0.6}, {"overall": None}], "Selection"),
    ]
    t = build_table(rows, [Column("overall", "Overall")], row_header="Method")
    md = to_markdown(t)
    assert "| *Selection* |" in md and "| entropy | **75.00 ± 7.07** |" in md and "| random | 60.00 |" in md
    assert "\\multicolumn{2}{l}{\\textit{Selection}}" in to_latex(t)


def test_rl_rows_of_a_sweep_are_named_by_what_their_jobs_vary(tmp_path):
    """Two RL judges from one sweep: each row is named by the overrides its job does not share with the
    other (not by a model hash); the one SFT judge, in both job dirs, keeps its plain label; outside a
    sweep (no job.json) the model key names them."""
    from egt.report.table1 import row_labels

    def metrics(path, key, label, model_key):
        path.mkdir(parents=True, exist_ok=True)
        (path / "metrics.json").write_text(
            json.dumps(
                {
                    "key": key,
                    "benchmark": {"name": "synthetic", "version": 1, "columns": VL_COLS},
                    "model": {
                        "label": label,
                        "path": f"/m/{model_key}",
                        "identity": {"stage": label, "key": model_key},
                    },
                    "metrics": {"overall": 0.7},
                }
            )
        )

    for job, method in enumerate(("egt", "random")):
        d = tmp_path / "sweep" / str(job)
        d.mkdir(parents=True)
        (d / "job.json").write_text(json.dumps({"overrides": ["rl.seed=0", f"method={method}", "experiment=x"]}))
        metrics(d / "eval/sft/synthetic", "e-sft", "sft", "ksft")  # the same artifact, copied into both jobs
        metrics(d / "eval/rl/synthetic", f"e-{method}", "rl", f"k{method}")
    labels = row_labels(find_results(tmp_path / "sweep"))
    assert sorted(labels.values()) == ["rl [method=egt]", "rl [method=random]", "sft"]

    for method in ("egt", "random"):
        metrics(tmp_path / "store" / method, f"e-{method}", "rl", f"k{method}")
    assert sorted(row_labels(find_results(tmp_path / "store")).values()) == ["rl [kegt]", "rl [krandom]"]
