"""The protocol (docs/reproduction/protocol.md): its settings block, read and hashed, and the plan of
every ``train.py`` command it asks for, in run order (:func:`plan`). :mod:`egt.campaign.reproduce` runs it.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

BLOCK = re.compile(r"```yaml\n(# egt-protocol\b.*?)```", re.S)


@dataclass(frozen=True)
class SweepSpec:
    name: str
    experiment: str
    tier: int = 1
    sweep: dict[str, str] = field(default_factory=dict)  # extra sweep axes: {key: "a,b,c"}
    overrides: tuple[str, ...] = ()  # fixed overrides of this sweep only


@dataclass
class Protocol:
    settings: dict[str, Any]
    sha256: str
    path: Path

    @property
    def sweeps(self) -> list[SweepSpec]:
        return [
            SweepSpec(
                s["name"],
                s["experiment"],
                int(s.get("tier", 1)),
                dict(s.get("sweep") or {}),
                tuple(s.get("overrides") or ()),
            )
            for s in self.settings["sweeps"]
        ]

    @property
    def preset(self) -> str:
        """The scale preset every command starts from (experiment=[<preset>,<table>]): small; quick in tests."""
        return str(self.settings.get("preset", "small"))

    def seeds(self, tier: int) -> list[int]:
        return list(range(int(self.settings["seeds"] if tier == 1 else self.settings["seeds_tier2"])))


def read_protocol(path: str | Path) -> Protocol:
    """The protocol's settings block (KeyError naming what is missing)."""
    text = Path(path).read_text(encoding="utf-8")
    m = BLOCK.search(text)
    if m is None:
        raise KeyError(f"{path}: no ```yaml block starting with '# egt-protocol'")
    settings = yaml.safe_load(m.group(1))
    for key in (
        "seeds",
        "seeds_tier2",
        "formats",
        "common",
        "sweeps",
        "timings",
        "stats",
        "gates",
        "calibration_seeds",
    ):
        if key not in settings:
            raise KeyError(f"{path}: the egt-protocol block has no '{key}'")
    return Protocol(settings, hashlib.sha256(text.encode()).hexdigest(), Path(path))


def seeds_arg(seeds: Sequence[int]) -> str:
    """The ``seeds="0,1,…"`` override of a sweep."""
    return 'seeds="' + ",".join(str(s) for s in seeds) + '"'


def train_cmd(p: Protocol, fmt: str, overrides: Sequence[str], artifacts: Path) -> list[str]:
    """One ``python train.py`` command of teacher format ``fmt``: ``overrides``, the protocol's common and
    per-format settings, the shared artifact store."""
    return [
        sys.executable,
        "train.py",
        *overrides,
        *p.settings["common"],
        *p.settings["formats"][fmt],
        f"paths.artifacts={artifacts}",
    ]


def plan(p: Protocol, sweeps: Path, artifacts: Path) -> list[dict[str, Any]]:
    """Every step: {"phase", "format", "name", "cmd", "dir"} in run order (phases: upstream, calibration,
    tier1, tier2)."""
    steps = []
    for fmt in p.settings["formats"]:
        d = sweeps / fmt / "upstream"
        steps.append(
            {
                "phase": "upstream",
                "format": fmt,
                "name": "upstream",
                "dir": d,
                "cmd": train_cmd(
                    p,
                    fmt,
                    [f"experiment={p.preset}", "stages=[data,distill,sft,probe,eval]", f"hydra.run.dir={d}"],
                    artifacts,
                ),
            }
        )
    for fmt in p.settings["formats"]:
        d = sweeps / "calibration" / fmt
        steps.append(
            {
                "phase": "calibration",
                "format": fmt,
                "name": "calibration",
                "dir": d,
                "cmd": train_cmd(
                    p,
                    fmt,
                    [
                        f"experiment=[{p.preset},table2]",
                        "ablation=full_rl",
                        seeds_arg(p.settings["calibration_seeds"]),
                        f"hydra.sweep.dir={d}",
                    ],
                    artifacts,
                ),
            }
        )
    for tier in (1, 2):
        for spec in (s for s in p.sweeps if s.tier == tier):
            for fmt in p.settings["formats"]:
                d = sweeps / fmt / spec.name
                axes = [*spec.overrides, *(f"{k}={v}" for k, v in spec.sweep.items())]
                steps.append(
                    {
                        "phase": f"tier{tier}",
                        "format": fmt,
                        "name": spec.name,
                        "dir": d,
                        "cmd": train_cmd(
                            p,
                            fmt,
                            [
                                f"experiment=[{p.preset},{spec.experiment}]",
                                *axes,
                                seeds_arg(p.seeds(tier)),
                                f"hydra.sweep.dir={d}",
                            ],
                            artifacts,
                        ),
                    }
                )
    return steps
