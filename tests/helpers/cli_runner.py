"""Run the real CLI from tests: ``cli(artifacts_dir, *overrides)`` returns its output.

Each call is ``train.py`` run as ``__main__`` in its own process with its own argv, environment, working
directory and ``sys.path`` (the script's directory first, as ``python train.py`` has it), its output in a file,
its exit code the test's. What differs from a fresh ``python train.py``: the process is forked from a
multiprocessing *forkserver* that has already imported the third-party libraries (torch, transformers,
Lightning, Hydra, datasets: ~10 s per process on the 2-core CI box, about half the suite's time before); egt
itself is imported fresh in every process, so an egt import error still fails here. A call whose environment
differs from the forkserver's in a variable those libraries read at import (``HF_*``, ``OMP_*``, ``TORCH*`` …)
runs in a fresh interpreter instead, and so does every call when ``EGT_TEST_FRESH_CLI=1`` (the one thing a
fork cannot give each run afresh is Python's string-hash seed: it is the forkserver's, one per pytest worker).
``train_py`` is the same for a test that needs stdout and stderr apart, another working directory or an
environment of its own. Tests that start other programs (torchrun, ``-m egt.reproduce``, a wandb sweep's
command) and one bad config (tests/integration/test_cli.py) start ``python`` themselves.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]
# eval.order=official: tests not about the evaluation order skip the default's second (swapped) view of
# every pair; those that are about it say eval.order=both
QUICK = ["experiment=quick", "eval.order=official"]

# imported once in the forkserver: the slow third-party imports every train.py process makes
PRELOAD = ["torch", "transformers", "lightning", "hydra", "omegaconf", "datasets", "pandas", "safetensors"]
# variables the preloaded libraries (and what they import: numpy, tqdm, matplotlib …) read when imported; a call
# whose value of one differs from the forkserver's gets a fresh interpreter
IMPORT_TIME_ENV = ("HF_", "HUGGINGFACE", "TRANSFORMERS", "TOKENIZERS", "DATASETS", "USE_", "TORCH", "PYTORCH")
IMPORT_TIME_ENV += ("CUDA", "NCCL", "OMP_", "MKL_", "KMP_", "OPENBLAS_", "NUMEXPR_", "PYTHON", "LD_", "XDG_")
IMPORT_TIME_ENV += ("HOME", "TQDM_", "MPL", "LIGHTNING", "PL_", "SLURM_", "RANK", "LOCAL_RANK", "WORLD_SIZE")
IMPORT_TIME_ENV += ("NODE_RANK", "GROUP_RANK", "MASTER_")

# the environment the forkserver starts in: the session's once pytest has imported the test modules (conftest's
# settings and what those imports set, scikit-learn's KMP_* …, which a fresh train.py started by a test inherits
# too; conftest calls session_env at the end of collection), not whatever the test that forks first has patched
BASE_ENV = dict(os.environ)
_server: dict | None = None  # {"ctx": the forkserver context, "env": BASE_ENV's import-time part}
_running: list = []  # forked runs started with popen=True, killed after their test (conftest)
_PATHS: dict[tuple, list[str]] = {}  # _interpreter_path's answers, by the variables sys.path depends on


def session_env() -> None:
    """Take ``BASE_ENV`` from ``os.environ`` now (before the forkserver starts: a later call changes nothing)."""
    if _server is None:
        BASE_ENV.clear()
        BASE_ENV.update(os.environ)


def _import_time_env(env: dict) -> dict:
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME_ENV)}


def _forkserver(env: dict):
    """The forkserver context, or None where this call needs a fresh interpreter."""
    global _server
    if os.environ.get("EGT_TEST_FRESH_CLI") == "1" or "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    if _server is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(BASE_ENV)
        try:
            from multiprocessing import forkserver

            forkserver.ensure_running()  # started now, in BASE_ENV
        finally:
            os.environ.clear()
            os.environ.update(saved)
        with tempfile.TemporaryDirectory(prefix="egt-cli-") as tmp:  # what the preloaded imports set
            child = ctx.Process(target=_report_added_env, args=(str(Path(tmp, "env.json")), BASE_ENV))
            child.start()
            child.join()
            added = json.loads(Path(tmp, "env.json").read_text())
        _server = {"ctx": ctx, "env": _import_time_env(BASE_ENV), "added": added}
    want, have, added = _import_time_env(env), _server["env"], _server["added"]
    differs = [k for k in {*want, *have} if want.get(k) != have.get(k) and want.get(k) != added.get(k, have.get(k))]
    return None if differs else _server["ctx"]


def _report_added_env(path: str, base: dict) -> None:
    """In a forked child: the variables the forkserver's imports added or changed (a test process that imported
    lightning has them too, as a fresh ``train.py`` will)."""
    Path(path).write_text(json.dumps({k: v for k, v in os.environ.items() if base.get(k) != v}))


def _interpreter_path(env: dict) -> list[str]:
    """``sys.path`` after its first entry (the script's directory) for ``python <script>`` in this environment."""
    key = tuple(sorted((k, v) for k, v in env.items() if k.startswith("PYTHON") or k == "HOME"))
    if key not in _PATHS:
        out = subprocess.run(
            [sys.executable, "-c", "import json, sys; print(json.dumps(sys.path[1:]))"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        _PATHS[key] = json.loads(out.stdout)
    return _PATHS[key]


def _become_main_process() -> None:
    """Undo what multiprocessing's child bootstrap did, so the run sees what a fresh interpreter has:
    ``current_process()`` is the MainProcess, no parent, no children, the platform's default start method (a
    DataLoader's workers, transformers' collator check), numpy's global generator seeded from the OS."""
    import itertools
    import multiprocessing.process as mp_process

    class MainProcess(mp_process.BaseProcess):  # multiprocessing.process._MainProcess, which the module deletes
        def __init__(self):
            self._identity, self._name, self._parent_pid = (), "MainProcess", None
            self._popen, self._closed = None, False
            self._config = {"authkey": mp_process.AuthenticationString(os.urandom(32)), "semprefix": "/mp"}

        def close(self):
            pass

    mp_process._current_process = MainProcess()
    mp_process._parent_process = None
    mp_process._children.clear()
    mp_process._process_counter = itertools.count(1)
    multiprocessing.set_start_method(None, force=True)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()


def _exec_as_main(path: str) -> None:
    """Run the script at ``path`` as python runs ``python <script>``: a new ``__main__`` module in
    ``sys.modules`` whose ``__file__`` is the absolute path, ``sys.argv[0]`` left as given (``runpy.run_path``
    would set it to the path)."""
    import builtins
    import importlib.machinery
    import types

    main = types.ModuleType("__main__")
    main.__dict__.update(
        __file__=path, __cached__=None, __spec__=None, __package__=None, __builtins__=builtins,
        __loader__=importlib.machinery.SourceFileLoader("__main__", path),
    )  # fmt: skip
    sys.modules["__main__"] = main
    with open(path, "rb") as f:
        code = compile(f.read(), path, "exec")
    exec(code, main.__dict__)


def _run_train_py(
    argv: list[str], env: dict, cwd: str, script: str, path: list[str], out: str, err: str, base: dict
) -> None:
    """The forked child: become ``python <script> *argv`` run in ``cwd`` and exit with its code."""
    import atexit
    import threading

    _become_main_process()
    for fd, name in ((1, out), (2, err)):
        f = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(f, fd)
        os.close(f)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")
    # what the preloaded imports put in the environment (lightning's PYTORCH_NVML_BASED_CUDA_CHECK …), as a
    # fresh process's imports would, under the call's own variables
    added = {k: v for k, v in os.environ.items() if base.get(k) != v}
    os.environ.clear()
    os.environ.update({**added, **env})
    os.chdir(cwd)
    sys.path[:] = path
    sys.argv = [script, *argv]
    code = 0
    try:
        _exec_as_main(str(Path(cwd, script).resolve()))
    except SystemExit as e:
        if isinstance(e.code, int) or e.code is None:
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        code = -signal.SIGINT
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    try:
        threading._shutdown()  # the interpreter joins non-daemon threads, then runs atexit (os._exit skips both)
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        if code == -signal.SIGINT:  # exit as python does after an uncaught KeyboardInterrupt: by the signal
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        os._exit(code)


class ForkedCLI:
    """The forked ``train.py`` as much of ``subprocess.Popen`` as the tests use."""

    def __init__(self, process):
        self._p = process
        self.pid = process.pid

    @property
    def returncode(self):
        return self._p.exitcode

    def poll(self):
        return self._p.exitcode

    def wait(self, timeout: float | None = None):
        self._p.join(timeout)
        if self._p.exitcode is None:
            raise subprocess.TimeoutExpired("train.py", timeout)
        return self._p.exitcode

    def send_signal(self, sig: int) -> None:
        if self._p.exitcode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _env(art: Path) -> dict:
    return {
        **os.environ,
        "EGT_ARTIFACTS": str(art),
        "EGT_LOGS": str(art / "logs"),
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def _start(argv: list[str], env: dict, cwd: Path, script: str, out: Path, err: Path):
    """``python <script> *argv`` in ``cwd``, stdout to ``out`` and stderr to ``err`` (appended; the same file
    for both merges them): forked from the forkserver where it can be, else a fresh interpreter."""
    ctx = _forkserver(env)
    if ctx is None:
        with open(out, "a") as fo, open(err, "a") as fe:
            return subprocess.Popen([sys.executable, script, *argv], cwd=cwd, env=env, stdout=fo, stderr=fe)
    script_dir = Path(cwd, script).resolve().parent
    path = [str(script_dir), *_interpreter_path(env)]
    args = (argv, env, str(cwd), script, path, str(out), str(err), BASE_ENV)
    child = ctx.Process(target=_run_train_py, args=args, daemon=False)
    child.start()
    return ForkedCLI(child)


def train_py(
    argv: list[str], env: dict, cwd: Path = REPO, script: str = "train.py", timeout: float = 600
) -> subprocess.CompletedProcess:
    """``subprocess.run([python, script, *argv], cwd=cwd, env=env, capture_output=True, text=True)``, the
    process forked as the module docstring says; a run past ``timeout`` seconds is killed and fails the test."""
    with tempfile.TemporaryDirectory(prefix="egt-cli-") as tmp:
        out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
        proc = _start(argv, env, cwd, script, out, err)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"{script} ran past {timeout:.0f} s:\n" + err.read_text()[-4000:]) from None
        return subprocess.CompletedProcess([script, *argv], proc.returncode, out.read_text(), err.read_text())


def cli(art: Path, *args: str, timeout: float = 600, popen: bool = False):
    """``python train.py *args`` with the store at ``art``: its output (stdout, then stderr), failing the test
    on a non-zero exit; with ``popen`` the running process, its output in ``art/popen.log``."""
    env = _env(art)
    argv = [*args, f"hydra.run.dir={art}/runs/{time.time_ns()}"]
    if popen:  # to a file: an unread pipe would block the child once full
        art.mkdir(parents=True, exist_ok=True)
        log = art / "popen.log"
        log.write_text("")
        proc = _start(argv, env, REPO, "train.py", log, log)
        _running.append(proc)
        return proc
    proc = train_py(argv, env, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def kill_leftovers() -> None:
    """SIGKILL the ``popen=True`` runs still going (a test that failed before killing its run): a forked run is
    the pytest worker's child, which multiprocessing would join when the worker exits."""
    while _running:
        proc = _running.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def done(art: Path, stage: str) -> list[Path]:
    return sorted(p.parent for p in (art / stage).glob("*/_SUCCESS.json"))


def kill_when(proc, ready: Callable[[], bool], art: Path, what: str, timeout: float = 300) -> None:
    """SIGKILL a ``cli(..., popen=True)`` run as soon as ``ready()`` holds; fail the test (with the
    run's log) if it ends first or ``what`` does not happen within ``timeout`` seconds."""
    import pytest

    t0 = time.time()
    while time.time() - t0 < timeout:
        if ready() and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return
        if proc.poll() is not None:
            pytest.fail("the run ended before it could be killed:\n" + (art / "popen.log").read_text()[-3000:])
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"{what} did not happen in {timeout:.0f} s:\n" + (art / "popen.log").read_text()[-3000:])
