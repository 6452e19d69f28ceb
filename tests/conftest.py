"""Shared test setup: nothing here may reach a network, wandb logs offline."""

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist (setup.cfg's addopts: one worker per core, at most 4) each worker and the CLI runs it
# starts compute on one intra-op thread: at torch's default of one thread per core, n workers would run n²
# threads on n cores, and spinning OpenMP threads made a tiny RL step ~20x slower on a shared 2-core box
# (tests/integration/test_sweeps.py). One process (`pytest -n 0`) keeps torch's default.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

import cli_runner  # noqa: E402  (tests/helpers)
import pytest  # noqa: E402
import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_finish(session):
    """The environment the tests' train.py runs start from: the session's, once the test modules are imported."""
    cli_runner.session_env()


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Qwen2.5-VL saved with save_pretrained (built once per session)."""
    from egt.models.corpus import world_corpus
    from egt.models.builder import TinyVLMSpec, build_tiny_vlm

    out = tmp_path_factory.mktemp("tiny") / "model"
    return build_tiny_vlm(out, TinyVLMSpec(), world_corpus(n=1000))


@pytest.fixture(scope="session")
def world_small():
    from egt.data.world import make_world

    return make_world({"n_sft": 16, "n_rl": 16, "n_bench": 16})


@pytest.fixture
def restore_varlen():
    """egt_varlen's registration (process-wide: transformers' attention interface) put back as it was after a test
    that registered another kernel (the ``reference`` one, tests/helpers/rl_passes.load_with_attention)."""
    from egt.models import attention

    saved = dict(attention._state)
    yield
    attention._state.update(saved)
    if saved["kernel"] is not None:
        attention.register(saved["backend"])


@pytest.fixture(autouse=True)
def _isolated_test():
    """What one test leaves in the pytest worker is undone when it ends, before the next test (and the CLI runs it
    starts, which inherit ``os.environ``) sees it: a ``cli(..., popen=True)`` run its test left going (it failed
    first) is killed, and ``os.environ`` is put back as it was. Libraries set variables in-process as they run
    (measured over the suite: scikit-learn's ``KMP_INIT_AT_FORK``/``KMP_DUPLICATE_LIB_OK`` when first imported in a
    test, wandb's ``WANDB_SERVICE``, transformers' compiled ``generate`` ``TOKENIZERS_PARALLELISM=0``), which a later
    test's train.py would otherwise inherit (tests/helpers/cli_runner.py sends a run whose import-time variables
    differ from its forkserver's to a fresh interpreter)."""
    saved = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}  # pytest's own: it removes it
    yield
    cli_runner.kill_leftovers()
    for k in {*os.environ} - {*saved, "PYTEST_CURRENT_TEST"}:
        del os.environ[k]
    os.environ.update(saved)
