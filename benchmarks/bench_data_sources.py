"""Rows/s and peak memory of reading outside preference data onto egt's schema (outside the tests).

    python benchmarks/bench_data_sources.py --rows 100000 [--formats pairs_jsonl pairs_parquet r1_reward_rl]
                                            [--num-proc 1 2]

For each real layout it writes --rows rows with small PNG images (28 px, a few hundred bytes) in a
scratch folder, then, in a fresh process, does what the data stage does with one split:
egt.data.sources.load_source (Arrow-backed ``Dataset.map``, images read and embedded as bytes), the
schema check of every row, the response-order randomisation and the atomic save_to_disk. Prints one
JSON line: rows, seconds (conversion alone and in all), rows/s, the process's peak RSS and its RSS
before the work. With several --num-proc values each reads the same files (data.num_proc: the
conversion's processes; each run with its own empty datasets cache); peak RSS is the main process's.
  pairs_jsonl    query/chosen/rejected + a relative image path per row (PNG files under image_root)
  pairs_parquet  question/response_1/response_2/label + {bytes, path} image structs
  r1_reward_rl   R1-Reward-RL's columns: question, message (JSON string, the judge prompt), answer, image
                 (base64 PNG)
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _png(i: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (28, 28), (i % 251, (i * 7) % 253, (i * 13) % 255)).save(buf, format="PNG")
    return buf.getvalue()


def write(fmt: str, n: int, out: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
    from make_fixtures import R1_PROMPT

    out.mkdir(parents=True, exist_ok=True)
    q = "What colour is the square in the picture, and how many circles are next to it?"
    a1, a2 = "The square is red and two circles stand next to it.", "The square is blue; there are three circles."
    if fmt == "pairs_jsonl":
        (out / "img").mkdir(exist_ok=True)
        with open(out / "data.jsonl", "w") as f:
            for i in range(n):
                (out / "img" / f"{i}.png").write_bytes(_png(i))
                f.write(
                    json.dumps(
                        {"id": f"r{i}", "query": f"{q} ({i})", "chosen": a1, "rejected": a2, "image": f"img/{i}.png"}
                    )
                    + "\n"
                )
        return {"path": str(out / "data.jsonl"), "image_root": str(out)}
    batches, writer = 10_000, None
    for start in range(0, n, batches):
        ids = range(start, min(start + batches, n))
        if fmt == "pairs_parquet":
            cols = {
                "question": [f"{q} ({i})" for i in ids],
                "response_1": [a1] * len(ids),
                "response_2": [a2] * len(ids),
                "label": ["1" if i % 2 else "2" for i in ids],
                "image": [{"bytes": _png(i), "path": f"{i}.png"} for i in ids],
            }
        else:
            msgs = [
                json.dumps(
                    [
                        {
                            "role": "user",
                            "content": [
                                {
                                    "type": "text",
                                    "text": R1_PROMPT.format(question=f"{q} ({i})", answer1=a1, answer2=a2),
                                },
                                {"type": "image", "image": f"/remote/{i}.png"},
                            ],
                        }
                    ]
                )
                for i in ids
            ]
            cols = {
                "question": [f"{q} ({i})" for i in ids],
                "message": msgs,
                "answer": [[f"<answer>{1 + i % 2}</answer>"] for i in ids],
                "image": [base64.b64encode(_png(i)).decode() for i in ids],
            }
        table = pa.table(cols)
        writer = writer or pq.ParquetWriter(out / "data.parquet", table.schema)
        writer.write_table(table)
    writer.close()
    spec = {"path": str(out / "data.parquet")}
    if fmt == "pairs_parquet":
        spec["columns"] = {"query": "question"}
    else:
        spec["format"] = "r1_reward_rl"
    return spec


def child(spec: dict, num_proc: int = 1) -> None:
    import datasets

    from egt.data.schema import randomize_order, validate_dataset
    from egt.data.sources import load_source
    from egt.utils.atomic import save_dataset_atomic

    datasets.disable_progress_bars()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    ds, counts = load_source(spec, "rl_pool", image_root=spec.pop("image_root", None), num_proc=num_proc)
    sec_convert = time.perf_counter() - t0
    ds, _ = validate_dataset(ds, "error")  # the rest of the data stage: checks, order, atomic save
    ds, _ = randomize_order(ds, seed=0)
    save_dataset_atomic(datasets.DatasetDict({"rl_pool": ds}), Path(spec["path"]).parent / "saved")
    sec = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "num_proc": num_proc,
                "rows": counts["rows"],
                "kept": counts["kept"],
                "convert_seconds": round(sec_convert, 1),
                "seconds": round(sec, 1),
                "rows_per_s": round(counts["rows"] / sec, 1),
                "peak_rss_mb": round(peak),
                "rss_before_mb": round(before),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--formats", nargs="+", default=["pairs_jsonl", "pairs_parquet", "r1_reward_rl"])
    ap.add_argument("--num-proc", type=int, nargs="+", default=[1])
    ap.add_argument("--child")
    a = ap.parse_args()
    if a.child:
        return child(json.loads(a.child), a.num_proc[0])
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in a.formats:
            t0 = time.perf_counter()
            spec = write(fmt, a.rows, Path(tmp) / fmt)
            written = time.perf_counter() - t0
            for n in a.num_proc:
                env = {"HF_DATASETS_CACHE": str(Path(tmp) / f"cache-{fmt}-{n}")}
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", json.dumps(spec), "--num-proc", str(n)],
                    capture_output=True,
                    text=True,
                    env={**os.environ, **env},
                )
                line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("{")), None)
                result = json.loads(line) if line else {"error": proc.stderr[-800:]}
                print(json.dumps({"format": fmt, "write_seconds": round(written, 1), **result}), flush=True)


if __name__ == "__main__":
    main()
