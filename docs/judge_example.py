"""Use a judge egt trained: the Python API, the TRL reward adapter, best-of-N ranking (docs/judge.md).

python docs/judge_example.py <artifacts>/sft/<key>/model <artifacts>/data/<key>/dataset
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from egt.judge import Judge
from egt.judge.adapters import TRLJudgeReward
from egt.utils.atomic import load_saved_dataset

model_dir, dataset = sys.argv[1], sys.argv[2]
card = json.loads((Path(model_dir) / "egt_judge.json").read_text())
print("card:", card["template"]["key"], card["generation"], card["pixel_budget"])

judge = Judge.from_pretrained(model_dir)
row = load_saved_dataset(dataset)["bench"][0]  # a held-out pair: image, question, two responses, label
v = judge.compare(row["images"], row["query"], row["response_1"], row["response_2"], order="both")
print("question:", row["query"], "| label:", row["label"])
print("verdict:", v.verdict, "p:", round(v.probability, 4) if v.probability else None, "p(1), p(2):", v.p_answer)
print("reasoning:", v.reasoning)
print("swapped verdict (same numbering):", v.swapped_verdict, "orders agree:", v.orders_agree)

reward = TRLJudgeReward(judge, reference_column="solution")  # GRPOTrainer(reward_funcs=[reward], ...)
print(
    "TRL rewards:",
    reward(
        prompts=[row["query"]] * 2,
        completions=[row["response_1"], row["response_2"]],
        image=[row["images"][0]] * 2,
        solution=[row["response_2"]] * 2,
    ),
)

with tempfile.TemporaryDirectory() as tmp:
    image = Path(tmp) / "scene.png"
    row["images"][0].save(image)
    cands = {
        "id": row["id"],
        "images": [image.name],
        "question": row["query"],
        "candidates": [row["response_1"], row["response_2"], "I cannot tell."],
    }
    (Path(tmp) / "candidates.jsonl").write_text(json.dumps(cands) + "\n")
    cmd = [
        sys.executable,
        "-m",
        "egt.judge",
        "rank",
        "--model",
        model_dir,
        "--data",
        f"{tmp}/candidates.jsonl",
        "--out",
        f"{tmp}/ranked.jsonl",
        "--scheme",
        "round_robin",
    ]
    print("rank totals:", subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip())
    r = json.loads((Path(tmp) / "ranked.jsonl").read_text())
    print({k: r[k] for k in ("best", "scores", "calls", "calls_stated", "ties", "position_disagreements")})
