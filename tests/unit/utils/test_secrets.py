"""egt.utils.secrets and egt.utils.http.Endpoint: what is redacted and how, credentials sent where they belong,
Hydra's files and a wandb run written without a secret (the CLI run: tests/integration/test_distill.py)."""

import base64
import json
import logging
import sys
import uuid
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import egt.config  # noqa: F401  (registers the schema and the open http_extras node)
from egt.artifacts import make_key
from egt.distill.openai_teacher import OpenAITeacher
from egt.utils import secrets
from egt.utils.http import Endpoint, MissingSecretError

CONF = Path(__file__).resolve().parents[3] / "conf"


@pytest.fixture
def env(monkeypatch):
    """Three variables with random values: KEY (a bearer key), HDR (a header), BODY (a body field)."""
    values = {name: f"{name.lower()}-{uuid.uuid4().hex}" for name in ("EGT_T_KEY", "EGT_T_HDR", "EGT_T_BODY")}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def log_redaction():
    """The record factory installed for one test, then the previous one back (it is process-wide)."""
    previous = logging.getLogRecordFactory()
    secrets.install_log_redaction()
    yield
    logging.setLogRecordFactory(previous)


def test_redact_keys_urls_text_and_env_references(env):
    secrets.remember(env["EGT_T_BODY"], "EGT_T_BODY")
    tree = {
        "base_url": "http://me:pw@h/v1",
        "api_key_env": "EGT_T_KEY",
        "max_tokens": 8,
        "pad_token": "<pad>",
        "headers": {"X-Key": "k", "Accept": "json"},
        "token": 7,
        "creds": {"password": "x"},
        "extra_body": {"top_k": 5, "meta": env["EGT_T_BODY"], "api_key": "${oc.env:EGT_T_KEY}"},
        "overrides": ["a.extra_body.api_key=lit-123456", "a.extra_headers.X-Key=k2", "a.max_tokens=8"],
    }
    assert secrets.redact(tree) == {
        "base_url": "http://***@h/v1",
        "api_key_env": "EGT_T_KEY",
        "max_tokens": 8,
        "pad_token": "<pad>",
        "headers": {"X-Key": "***", "Accept": "json"},
        "token": "***",
        "creds": {"password": "***"},
        "extra_body": {"top_k": 5, "meta": "${oc.env:EGT_T_BODY}", "api_key": "${oc.env:EGT_T_KEY}"},
        "overrides": ["a.extra_body.api_key=***", "a.extra_headers.X-Key=***", "a.max_tokens=8"],
    }
    text = f"failed: {{'api_key': 'abc'}} sent {env['EGT_T_BODY']} to https://u:p@x.org/v1?password=pw2"
    assert secrets.redact_text(text) == "failed: {'api_key': '***'} sent *** to https://***@x.org/v1?password=***"
    sweep = r"#0 : t.base_url=http\://u\:p@h\:9/v1 t.api_key=k1,k2,t.seed=1"  # as Hydra's launcher logs it
    assert secrets.redact_text(sweep) == r"#0 : t.base_url=http\://***@h\:9/v1 t.api_key=***,t.seed=1"


def test_config_container_keeps_variable_names_and_keys_hash_names_not_values(env, monkeypatch):
    cfg = OmegaConf.create(
        {
            "judge": {"extra_headers": {"X-Org": "${oc.env:EGT_T_HDR}"}, "api_key": "lit-abcdef"},
            "paths": {"home": "${oc.env:EGT_T_KEY}"},
        }
    )
    out = secrets.config_container(cfg)
    assert out["judge"] == {"extra_headers": {"X-Org": "${oc.env:EGT_T_HDR}"}, "api_key": "***"}
    assert out["paths"]["home"] == env["EGT_T_KEY"]  # outside request extras and secret keys: resolved
    key = make_key("rl", secrets.config_container(cfg.judge))
    monkeypatch.setenv("EGT_T_HDR", "another-value")
    cfg.judge.api_key = "lit-other1"
    assert make_key("rl", secrets.config_container(cfg.judge)) == key  # values changed, names did not


def test_register_config_remembers_what_a_config_holds_or_names(env):
    cfg = OmegaConf.create(
        {
            "t": {
                "api_key_env": "EGT_T_KEY",
                "extra_headers_env": {"X-A": "EGT_T_HDR"},
                "extra_body": {"m": "${oc.env:EGT_T_BODY}"},
                "password": "lit-pw-123456",
            },
            "hydra": {"overrides": {"task": ["t.base_url=http://u:pw-987654@h/v1"]}},
        }
    )
    secrets.register_config(cfg)
    line = " ".join([*env.values(), "lit-pw-123456", "pw-987654"])
    assert secrets.redact_text(line) == " ".join(["***"] * 5)


def test_endpoint_sends_credentials_where_they_belong_and_reads_variables_per_request(env, monkeypatch, caplog):
    ep = Endpoint(
        "http://bob:p%40ss@h:8/v1/",
        "distill.teacher",
        "EGT_T_KEY",
        {"X-Org": "o"},
        {"X-Api-Key": "EGT_T_HDR"},
        {"top_k": 5},
        {"user_token": "EGT_T_BODY"},
    )
    assert ep.base_url == "http://h:8/v1"
    basic = "Basic " + base64.b64encode(b"bob:p@ss").decode()
    assert ep.headers() == {"Authorization": basic, "X-Org": "o", "X-Api-Key": env["EGT_T_HDR"]}
    assert "is not sent" in caplog.text and env["EGT_T_KEY"] not in caplog.text  # userinfo wins over the key
    assert ep.body({"model": "m"}) == {"model": "m", "top_k": 5, "user_token": env["EGT_T_BODY"]}
    monkeypatch.setenv("EGT_T_HDR", "rotated-1")
    assert ep.headers()["X-Api-Key"] == "rotated-1"  # read at request time
    bearer = Endpoint("http://h/v1", "reward.judge", "EGT_T_KEY")
    assert bearer.headers() == {"Authorization": f"Bearer {env['EGT_T_KEY']}"}
    monkeypatch.delenv("EGT_T_BODY")
    with pytest.raises(MissingSecretError, match=r"EGT_T_BODY \(distill.teacher.extra_body_env.user_token\)"):
        ep.body({})
    with pytest.raises(ValueError, match="must name an environment variable") as e:
        Endpoint("http://h/v1", "reward.judge", "sk-pasted-value")
    assert "sk-pasted-value" not in str(e.value)
    public = json.dumps(ep.public())
    assert all(v not in public for v in (*env.values(), "p@ss", "bob")) and "EGT_T_HDR" in public


def test_teacher_public_config_is_unchanged_by_credentials_and_names_its_variables(env):
    plain = OpenAITeacher("http://h/v1", "m", api_key_env="EGT_T_KEY").public_config()
    assert set(plain) == {
        "name",
        "version",
        "base_url",
        "model",
        "template",
        "system_prompt",
        "temperature",
        "max_tokens",
        "seed",
        "extra_body",
    }  # as before extras existed: old keys stay valid
    assert OpenAITeacher("http://u:pw@h/v1", "m", api_key_env=None).public_config() == plain
    t = OpenAITeacher(
        "http://h/v1",
        "m",
        extra_body={"api_key": "lit-123456", "top_k": 5},
        extra_headers_env={"X-Api-Key": "EGT_T_HDR"},
    )
    public = t.public_config()
    assert public["extra_body"] == {"api_key": "***", "top_k": 5}
    assert public["extra_headers_env"] == {"X-Api-Key": "EGT_T_HDR"} and "lit-123456" not in json.dumps(public)


def test_open_extras_compose_from_the_command_line():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "distill/teacher=openai",
                "distill.teacher.base_url=http://h/v1",
                "distill.teacher.model=m",
                "distill.teacher.extra_body={k: v, n: {a: 1}}",
                "distill.teacher.extra_headers.X-Org=o",
                "reward/judge=http",
                "reward.judge.extra_headers_env={X-Api-Key: MY_VAR}",
            ],
        )
    assert OmegaConf.to_container(cfg.distill.teacher.extra_body) == {"k": "v", "n": {"a": 1}}
    assert cfg.distill.teacher.extra_headers == {"X-Org": "o"}
    assert cfg.reward.judge.extra_headers_env == {"X-Api-Key": "MY_VAR"}


def test_log_records_and_exceptions_are_redacted(env, log_redaction, caplog):
    secrets.remember(env["EGT_T_KEY"], "EGT_T_KEY")
    log = logging.getLogger("egt.test_secrets")
    try:
        raise RuntimeError(f"POST http://u:pw@h/v1 refused {env['EGT_T_KEY']}")
    except RuntimeError as exc:
        log.exception("teacher failed with %s", env["EGT_T_KEY"])
        secrets.scrub_exception(exc)
        assert str(exc) == "POST http://***@h/v1 refused ***"
    text = caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    assert env["EGT_T_KEY"] not in text and "pw@" not in text and "teacher failed with ***" in text


def test_hydra_callback_writes_hydra_files_and_multirun_yaml_redacted(tmp_path, env):
    (tmp_path / "multirun.yaml").write_text("hydra:\n  overrides:\n    task: [t.api_key=lit-multirun-1]\n")
    cfg = OmegaConf.create(
        {
            "t": {
                "base_url": "http://u:pw-123456@h/v1",
                "extra_body": {"api_key": "lit-body-123", "m": "${oc.env:EGT_T_BODY}"},
            },
            "hydra": {
                "mode": "RunMode.MULTIRUN",
                "output_subdir": None,
                "runtime": {"output_dir": str(tmp_path / "0")},
                "sweep": {"dir": str(tmp_path)},
                "job": {"override_dirname": "t.api_key=lit-dirname-1"},
                "overrides": {"task": ["t.extra_body.api_key=lit-body-123"]},
            },
        }
    )
    secrets.RedactSecrets().on_job_start(cfg)
    files = {p.name: p.read_text() for p in tmp_path.rglob("*.yaml")}
    assert set(files) == {"config.yaml", "hydra.yaml", "overrides.yaml", "multirun.yaml"}
    assert (tmp_path / "0" / ".hydra" / "config.yaml").is_file()
    for text in files.values():
        assert not any(s in text for s in ("pw-123456", "lit-", env["EGT_T_BODY"])), text
    assert "${oc.env:EGT_T_BODY}" in files["config.yaml"] and "api_key: '***'" in files["config.yaml"]


def test_wandb_offline_run_holds_no_secret(tmp_path, env, monkeypatch):
    """A real offline wandb run: its config and the command line it records (sys.argv) are redacted."""
    from egt.utils.logging import close_logger, make_logger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(sys, "argv", [sys.argv[0], "t.base_url=http://u:pw-argv-77@h/v1", "t.api_key=lit-argv-1"])
    cfg = OmegaConf.create(
        {
            "run_name": "secrets",
            "logger": {
                "_target_": "lightning.pytorch.loggers.WandbLogger",
                "project": "egt",
                "offline": True,
                "save_dir": str(tmp_path),
            },
            "t": {
                "api_key_env": "EGT_T_KEY",
                "extra_body": {"m": "${oc.env:EGT_T_BODY}"},
                "base_url": "http://u:pw-argv-77@h/v1",
            },
        }
    )
    secrets.register_config(cfg)
    logger = make_logger(cfg, "test")
    close_logger(logger, "success")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files)
    hits = [(s, p) for p in files for s in ("pw-argv-77", "lit-argv-1", *env.values()) if s.encode() in p.read_bytes()]
    assert not hits and sys.argv[1].endswith("pw-argv-77@h/v1")  # argv restored
