"""The distill progress bar: samples done (kept + discarded) of those to decide, req/s, ETA."""

from __future__ import annotations

import time
from typing import Any

from tqdm.auto import tqdm


class DistillProgress:
    """Called with each unit's journal records; a sample is *done* once kept, skipped or out of attempts."""

    def __init__(self, total: int, max_attempts: int, kept: int = 0, discarded: int = 0, **tqdm_kw: Any):
        self.max_attempts, self.kept, self.discarded, self.requests = max_attempts, kept, discarded, 0
        self.t0 = time.perf_counter()
        self.bar = tqdm(total=total, desc="distill", unit="sample", dynamic_ncols=True, **tqdm_kw)
        self._postfix()

    def _postfix(self) -> None:
        rate = self.requests / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix(kept=self.kept, discarded=self.discarded, req_s=f"{rate:.1f}", refresh=False)

    def __call__(self, records: list[dict[str, Any]]) -> None:
        done = 0
        for r in records:
            self.requests += r.get("requests", 0)
            if r.get("ok"):
                self.kept += 1
            elif r.get("skipped") or r["attempt"] >= self.max_attempts:
                self.discarded += 1
            else:
                continue
            done += 1
        self._postfix()
        self.bar.update(done)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> "DistillProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
