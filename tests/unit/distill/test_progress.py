"""The distill progress bar counts a sample once: when kept, skipped or out of attempts."""

import io

from egt.distill.progress import DistillProgress


def test_done_kept_discarded_and_requests():
    out = io.StringIO()
    with DistillProgress(total=4, max_attempts=3, kept=1, discarded=0, file=out) as bar:
        bar(
            [
                {"id": "a", "attempt": 1, "ok": True, "requests": 2},
                {"id": "b", "attempt": 1, "ok": False, "requests": 1},
            ]
        )  # b will be retried: not done
        bar(
            [
                {"id": "b", "attempt": 3, "ok": False, "requests": 1},  # out of attempts: discarded
                {"id": "c", "attempt": 1, "ok": False, "parsed": None, "skipped": "bad image"},
            ]
        )
        assert (bar.kept, bar.discarded, bar.requests, bar.bar.n) == (2, 2, 4, 3)
    assert "kept=2" in out.getvalue() and "discarded=2" in out.getvalue() and "req_s=" in out.getvalue()
