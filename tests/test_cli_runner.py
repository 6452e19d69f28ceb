"""The tests' CLI runner (tests/helpers/cli_runner.py): a ``train.py`` forked from the preloaded forkserver
prints what a fresh ``python train.py`` prints, and exits with its code."""

from __future__ import annotations

import pytest

import cli_runner
from cli_runner import cli


def test_a_forked_cli_is_a_fresh_one(tmp_path, monkeypatch):
    args = ["--cfg", "job", *cli_runner.QUICK, "stages=[data,sft]", "sft.lr=7e-4"]
    monkeypatch.delenv("EGT_TEST_FRESH_CLI", raising=False)
    forked = cli(tmp_path, *args)
    assert cli_runner._forkserver(cli_runner._env(tmp_path)) is not None  # that call was forked
    monkeypatch.setenv("EGT_TEST_FRESH_CLI", "1")
    fresh = cli(tmp_path, *args)
    assert forked == fresh and "lr: 0.0007" in forked

    monkeypatch.delenv("EGT_TEST_FRESH_CLI")
    with pytest.raises(AssertionError, match="Did you mean 'distill'"):  # a user error: exit 1, its one line
        cli(tmp_path, *cli_runner.QUICK, "stages=[data,distil]")


def test_an_import_time_variable_gets_a_fresh_interpreter(tmp_path, monkeypatch):
    env = cli_runner._env(tmp_path)
    assert cli_runner._forkserver(env) is not None
    assert cli_runner._forkserver({**env, "HF_HOME": str(tmp_path)}) is None
    assert cli_runner._forkserver({**env, "OMP_NUM_THREADS": "7"}) is None
    assert cli_runner._forkserver({**env, "EGT_ARTIFACTS": str(tmp_path / "x")}) is not None  # read at run time
