"""Every training config under experiments/ (the recipes behind docs/results.md) loads and
passes the config checks, so a typo is caught before a long run starts."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from facemark.training.config import load_config
from facemark.training.self_training import curriculum_plan

ROOT = Path(__file__).resolve().parents[1] / "experiments"
CONFIGS = sorted(p for p in ROOT.rglob("*.yaml")
                 if "experiment" in (yaml.safe_load(p.read_text()) or {}))


def test_there_are_experiment_configs():
    assert len(CONFIGS) >= 10


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_experiment_config_loads(path):
    cfg = load_config(path)              # types, ranges, choices; paths made absolute
    specs = list(cfg.data.train) + [s for d in cfg.cross_protocol.datasets for s in d["train"]]
    assert specs and all(Path(s.split(":", 1)[-1]).is_absolute() for s in specs)
    if "self_training" in yaml.safe_load(path.read_text()):
        assert curriculum_plan(cfg)
