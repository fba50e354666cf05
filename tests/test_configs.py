"""Every bundled experiment config loads and builds its model."""
import numpy as np
import pytest

from facemark.configs import bundled_config_names, resolve_config
from facemark.data.schemes import get_scheme
from facemark.errors import ConfigError
from facemark.training.config import load_config
from facemark.training.run import build_model_config

NAMES = bundled_config_names()


def test_configs_cover_the_paper():
    datasets = {n.split("/")[0] for n in NAMES} - {"sepbn", "selftrain"}
    assert {"300w", "wflw", "cofw", "aflw", "menpo", "300vw"} <= datasets
    for ds in datasets:
        for tag in ("r18", "r50", "r101", "mbv2", "mbv3"):
            assert f"{ds}/pipnet_{tag}" in NAMES
    for s in (16, 32, 64, 128):
        assert f"wflw/ablation/stride{s}_nonrm" in NAMES
    for c in (1, 3, 5, 10, 15, 20):
        assert f"300w/ablation/neighbors{c}" in NAMES
    for base in ("coordnet_r18", "mapnet_s1_r18", "mapnet_s2_r18", "mapnet_s4_r18", "grmi_r18",
                 "pipnet_nonrm_r18"):
        assert f"300w/baselines/{base}" in NAMES


def test_unknown_config_name_suggests_close_ones():
    with pytest.raises(ConfigError, match="300w/pipnet_r18"):
        resolve_config("300w/pipnet_r81")


def _model_key(cfg):
    m = cfg.model
    return (m.name, m.backbone, m.net_stride, m.num_nb, repr(sorted(m.kwargs.items())),
            cfg.data.scheme)


_seen = {}
for _n in NAMES:
    _cfg = load_config(resolve_config(_n))
    _seen.setdefault(_model_key(_cfg), _n)


@pytest.mark.parametrize("name", sorted(_seen.values()))
def test_config_builds_its_model(name):
    cfg = load_config(resolve_config(name), ["data.input_size=64"] if "stride128" not in name
                      else ["data.input_size=128"])
    n = get_scheme(cfg.data.scheme).num_points
    mean_face = np.random.default_rng(0).uniform(0.2, 0.8, (n, 2))
    config = build_model_config(cfg, mean_face)
    assert config["name"] == cfg.model.name
