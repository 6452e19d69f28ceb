"""What train.py does once Hydra has composed the config."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import lightning as L
from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf

from egt import distributed
from egt.config import validate
from egt.errors import ConfigError
from egt.pipeline import Pipeline, format_summary
from egt.preflight import configured_paths
from egt.stages import HEADLINES
from egt.sweep import hydra_job, run_job
from egt.utils import secrets
from egt.utils.logging import quiet_third_party

log = logging.getLogger("egt")


def rewrite_model_path_args(argv: list[str]) -> list[str]:
    """Turn ``model=<dir>`` into ``model=local model.path=<dir>``.

    >>> rewrite_model_path_args(["train.py", "model=tiny"])
    ['train.py', 'model=tiny']
    >>> rewrite_model_path_args(["train.py", "model=/ckpt/qwen"])
    ['train.py', 'model=local', 'model.path=/ckpt/qwen']
    """
    out = []
    for arg in argv:
        if arg.startswith("model=") and ("/" in arg or os.path.isdir(arg[len("model=") :])):
            out += ["model=local", f"model.path={arg[len('model=') :]}"]
        else:
            out.append(arg)
    return out


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def rewrite_group_args(argv: list[str], conf_dir: Path = CONF_DIR) -> list[str]:
    """Let a nested config group be chosen with a dot, as its key is written:
    ``rl.loss=ppo_clip`` → ``rl/loss=ppo_clip`` when ``conf/rl/loss/ppo_clip.yaml`` exists
    (comma lists for ``-m`` too). Anything else passes through unchanged.

    >>> rewrite_group_args(["t", "rl.loss=ppo_clip", "rl.lr=1e-6", "reward.judge=rule,http"])
    ['t', 'rl/loss=ppo_clip', 'rl.lr=1e-6', 'reward/judge=rule,http']
    """
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        group = conf_dir / key.replace(".", "/")
        if (
            eq
            and "." in key
            and key[0].isalpha()
            and value
            and group.is_dir()
            and all((group / f"{v.strip()}.yaml").is_file() for v in value.split(","))
        ):
            arg = f"{key.replace('.', '/')}={value}"
        out.append(arg)
    return out


def headline_metric(results: dict) -> float | None:
    """The number a sweeper optimises: the ``headline`` summary value of the last stage of the run that
    defines one (egt.stages.HEADLINES: sft, rl, eval). None when that stage ran without it (e.g.
    ``rl.eval_n=0`` with no eval stage after it): an earlier stage's number is never passed off as it."""
    for stage in reversed(list(results)):
        if stage in HEADLINES:
            value = (results[stage].get("summary") or {}).get("headline")
            return None if value is None else float(value)
    return None


DEBUG_HINT = "(the full traceback: EGT_DEBUG=1 or HYDRA_FULL_ERROR=1)"


class UserFacingError(CompactHydraException):
    """A mistake the user fixes by changing a setting or an input: Hydra prints its message alone (one
    line and a hint) instead of a traceback, and exits 1. The original error is its ``__cause__``."""


def debug_requested() -> bool:
    """EGT_DEBUG=1 or HYDRA_FULL_ERROR=1: every error shows its full traceback."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes") for v in ("EGT_DEBUG", "HYDRA_FULL_ERROR"))


def apply_debug_switch() -> None:
    """Make EGT_DEBUG=1 mean HYDRA_FULL_ERROR=1 too (Hydra reads only its own variable, and only "1")."""
    if debug_requested():
        os.environ["HYDRA_FULL_ERROR"] = "1"


def user_error_types() -> tuple[type[BaseException], ...]:
    """The errors whose message tells the user what to change (a setting, a row, a file, a secret)."""
    from egt.benchmarks.base import BenchmarkDataError
    from egt.data.schema import BadSampleError
    from egt.data.sources import SourceRowError
    from egt.distill.teacher import RequestCapReached
    from egt.select.scores import MissingColumnError
    from egt.utils.http import MissingSecretError

    return (
        ConfigError,
        SourceRowError,
        BadSampleError,
        BenchmarkDataError,
        MissingColumnError,
        MissingSecretError,
        RequestCapReached,
    )


def is_user_error(exc: BaseException, cfg: DictConfig) -> bool:
    """Whether ``exc`` is a mistake the user can fix: one of :func:`user_error_types`, or a
    FileNotFoundError about a path the config names (any other is a bug: keep its traceback)."""
    if isinstance(exc, user_error_types()):
        return True
    if isinstance(exc, FileNotFoundError):
        named = [
            path
            for _, path, _ in configured_paths(
                cfg, list(cfg.stages) + ["model", "data", "distill", "sft", "probe", "rl", "eval"]
            )
        ]
        return any(path and path in str(exc) for path in named)
    return False


def user_message(exc: BaseException) -> str:
    """``egt: <message>`` on one line, then how to see the traceback."""
    text = " ".join(str(exc).split())
    return f"egt: {text}\n{DEBUG_HINT}"


# Directories egt writes (made absolute whenever relative) and paths it reads (made absolute when they
# exist under the launch directory: a Hub id such as ``org/name`` that does not passes through)
OUTPUT_PATHS = ("paths.artifacts", "paths.logs")
INPUT_PATHS = (
    "model.path",
    "data.path",
    "data.image_root",
    "distill.trajectories_path",
    "distill.teacher.model_path",
    "sft.model_path",
    "probe.model_path",
    "probe.table_path",
    "rl.selection_path",
    "reward.judge.model_path",
    "eval.model_path",
    "eval.data_root",
)


def launch_dir() -> Path:
    """Where the command was started: Hydra's original cwd (before ``hydra.job.chdir=true`` moved into
    the run directory), else the current directory."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return Path.cwd()
    from hydra.utils import get_original_cwd

    return Path(get_original_cwd())


def _anchored(value: object, base: Path, output: bool) -> str | None:
    """``value`` made absolute against ``base`` when it is a relative path to anchor, else None."""
    if not isinstance(value, str) or not value.strip() or Path(value).expanduser().is_absolute():
        return None
    path = base / value
    return str(path) if output or path.exists() else None


def anchor_paths(cfg: DictConfig, base: Path | None = None) -> list[str]:
    """Relative paths in ``cfg`` resolved against the launch directory when the run has moved
    (``hydra.job.chdir=true``), so the artifact store, logs and inputs are the launch directory's and
    a second run reuses, a killed one resumes. Returns the keys changed; nothing when cwd is ``base``."""
    base = (base or launch_dir()).resolve()
    if base == Path.cwd().resolve():
        return []
    keys = [(k, True) for k in OUTPUT_PATHS] + [(k, False) for k in INPUT_PATHS]
    sources = OmegaConf.select(cfg, "data.sources", default=None) or {}
    keys += [
        (f"data.sources.{split}.{i}.{f}", False)
        for split in sources
        for i in range(len(sources[split] or []))
        for f in ("path", "image_root")
    ]
    changed = []
    for key, output in keys:
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        new = _anchored(value, base, output)
        if new is not None:
            OmegaConf.update(cfg, key, new, merge=False, force_add=False)
            changed.append(key)
    return changed


def main_impl(cfg: DictConfig) -> float | None:
    # under train.py the Hydra callback (egt.utils.secrets.RedactSecrets) did this before Hydra logged anything
    secrets.register_config(cfg)
    secrets.install_log_redaction()
    quiet_third_party()

    def run() -> dict:
        moved = anchor_paths(cfg)
        if moved:
            log.info("hydra.job.chdir: %s resolved against %s", ", ".join(moved), launch_dir())
        validate(cfg)  # includes the paths this run's stages read (egt.preflight): before any stage starts
        distributed.init(cfg)  # a no-op for one process; every rank of a torchrun / srun launch gets here
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        Path(cfg.paths.artifacts).mkdir(parents=True, exist_ok=True)
        log.info("artifacts: %s", Path(cfg.paths.artifacts).resolve())
        results = Pipeline(cfg).run()
        job = hydra_job()
        if job is not None and job["mode"] == "MULTIRUN":
            log.info(format_summary(results, job=f"sweep job {job['num']}: {' '.join(job['overrides'])}"))
        else:
            log.info(format_summary(results))
        return results

    try:
        return run_job(cfg, run, headline_metric)  # + job.json in the Hydra output dir, failed or not
    except Exception as exc:
        if debug_requested() or not is_user_error(exc, cfg):
            raise
        if _multirun():  # stays an exception: Hydra records the failed job, runs the others, then prints it
            raise UserFacingError(user_message(exc)) from exc
        print(user_message(exc), file=sys.stderr)  # one run: the message alone, none of Hydra's lines
        raise SystemExit(1) from exc


def _multirun() -> bool:
    job = hydra_job()
    return job is not None and job["mode"] == "MULTIRUN"
