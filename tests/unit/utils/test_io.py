from egt.utils.io import Journal


def test_journal_roundtrip_and_torn_last_line(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    j.append([{"id": "a", "n": 1}, {"id": "b", "n": 2}])
    with open(j.path, "a") as f:
        f.write('{"id": "c", "n"')  # kill mid-write
    assert [r["id"] for r in j.read()] == ["a", "b"]
    j.append([{"id": "c", "n": 3}])  # the torn bytes were truncated away
    assert [r["id"] for r in j.read()] == ["a", "b", "c"]


def test_journal_corrupt_middle_line_is_an_error(tmp_path):
    p = tmp_path / "j.jsonl"
    p.write_text('{"id": 1}\nnot json\n{"id": 2}\n')
    import pytest

    with pytest.raises(ValueError, match="corrupt line 2"):
        Journal(p).read()
