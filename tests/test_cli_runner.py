"""The tests' CLI runner (tests/helpers/cli_runner.py): a script forked from the preloaded forkserver sees what a
fresh ``python <script>`` sees, ``train.py`` prints and computes what a fresh one does, and exits with its code."""

from __future__ import annotations

import json
import os

import pytest

import cli_runner
from cli_runner import cli, done, train_py

PROBE = """
import json, multiprocessing, os, sys, threading
import numpy
import lightning  # noqa: F401  (its import sets PYTORCH_NVML_BASED_CUDA_CHECK, as in a fresh process)
out = {
    "process": multiprocessing.current_process().name,
    "parent": multiprocessing.parent_process() is not None,
    "start_method": multiprocessing.get_start_method(),
    "file": __file__,
    "argv": sys.argv,
    "cwd": os.getcwd(),
    "path0": sys.path[0],
    "helpers_on_path": any(p.endswith("helpers") for p in sys.path),
    "env": os.environ.get("EGT_PROBE"),
    "nvml": os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK"),
    "numpy": float(numpy.random.random()),
}
print(json.dumps(out))
threading.Thread(target=lambda: (__import__("time").sleep(0.5), print("thread done"))).start()
sys.exit(3)
"""


def test_a_forked_script_sees_a_fresh_process(tmp_path, monkeypatch):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = {**cli_runner._env(tmp_path), "EGT_PROBE": "x"}
    runs = {}
    for mode in ("forked", "forked again", "fresh"):
        monkeypatch.setenv("EGT_TEST_FRESH_CLI", "1" if mode == "fresh" else "0")
        proc = train_py(["a", "b"], env, cwd=tmp_path, script="probe.py")
        assert proc.returncode == 3 and proc.stdout.splitlines()[1:] == ["thread done"], proc
        runs[mode] = json.loads(proc.stdout.splitlines()[0])
    monkeypatch.setenv("EGT_TEST_FRESH_CLI", "0")
    assert cli_runner._forkserver(env) is not None  # the first two were forked
    forked, again, fresh = runs["forked"], runs["forked again"], runs["fresh"]
    assert forked["numpy"] != again["numpy"]  # numpy's global generator is seeded per process
    for run in runs.values():
        run.pop("numpy")
    assert forked == again == fresh
    assert fresh["process"] == "MainProcess" and not fresh["parent"] and fresh["file"] == str(script)
    assert fresh["argv"] == ["probe.py", "a", "b"] and fresh["path0"] == str(tmp_path) == fresh["cwd"]
    assert not fresh["helpers_on_path"] and fresh["env"] == "x" and fresh["nvml"] == "1"


def test_a_forked_cli_computes_what_a_fresh_one_does(tmp_path, monkeypatch):
    args = [*cli_runner.QUICK, "stages=[data]", "data.world.n_sft=16", "logger=none"]
    monkeypatch.setenv("EGT_TEST_FRESH_CLI", "0")
    assert cli_runner._forkserver(cli_runner._env(tmp_path / "forked")) is not None
    forked = cli(tmp_path / "forked", *args)
    monkeypatch.setenv("EGT_TEST_FRESH_CLI", "1")
    fresh = cli(tmp_path / "fresh", *args)
    (a,), (b,) = done(tmp_path / "forked", "data"), done(tmp_path / "fresh", "data")
    assert a.name == b.name and "[data] computing artifact" in forked and "[data] computing artifact" in fresh
    sa, sb = (json.loads((p / "_SUCCESS.json").read_text())["summary"] for p in (a, b))
    assert {k: v for k, v in sa.items() if "second" not in k} == {k: v for k, v in sb.items() if "second" not in k}

    monkeypatch.setenv("EGT_TEST_FRESH_CLI", "0")
    with pytest.raises(AssertionError, match="Did you mean 'distill'"):  # a user error: exit 1, its one line
        cli(tmp_path, *cli_runner.QUICK, "stages=[data,distil]")


def test_an_import_time_variable_gets_a_fresh_interpreter(tmp_path, monkeypatch):
    import lightning  # noqa: F401  (sets PYTORCH_NVML_BASED_CUDA_CHECK here, as in the forkserver: still forked)

    monkeypatch.delenv("EGT_TEST_FRESH_CLI", raising=False)
    env = cli_runner._env(tmp_path)
    assert env["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"
    assert cli_runner._forkserver(env) is not None
    for name, value in (("HF_HOME", str(tmp_path)), ("OMP_NUM_THREADS", "7"), ("RANK", "3"), ("HOME", "/x")):
        assert cli_runner._forkserver({**env, name: value}) is None, name
    assert cli_runner._forkserver({**env, "EGT_ARTIFACTS": str(tmp_path / "x")}) is not None  # read at run time


def test_a_test_that_leaves_a_variable_behind():
    os.environ["OMP_NUM_THREADS"] = "7"  # an import-time variable, as scikit-learn's import sets KMP_INIT_AT_FORK
    os.environ["MASTER_PORT"] = "29555"  # what a distributed setup does


def test_the_next_test_and_its_runs_do_not_see_it(tmp_path, monkeypatch):  # the same worker (--dist loadfile)
    monkeypatch.delenv("EGT_TEST_FRESH_CLI", raising=False)
    for name in ("OMP_NUM_THREADS", "MASTER_PORT"):
        assert os.environ.get(name) == cli_runner.BASE_ENV.get(name)
    assert cli_runner._forkserver(cli_runner._env(tmp_path)) is not None
