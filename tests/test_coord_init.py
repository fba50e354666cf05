"""model.kwargs.init_mean_face: a coordinate head that starts at the training mean face."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facemark.errors import ConfigError
from facemark.models import create_model
from facemark.models.cross_protocol import CrossProtocolNet
from facemark.models.registry import model_arguments, model_config, model_from_config


def _tiny(n: int, **kw):
    return create_model("coordnet", num_points=n, backbone="vanilla", input_size=64,
                        pool="avg", hidden=[8], **kw)


def _first_points(model) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(torch.rand(2, 3, 64, 64))["coords"].numpy()


def test_the_first_prediction_is_the_mean_face_and_survives_a_rebuild():
    mean = np.random.default_rng(0).uniform(0.2, 0.8, (68, 2))
    model = _tiny(68, init_mean_face=True, mean_face=mean)
    np.testing.assert_allclose(_first_points(model)[1], mean, atol=1e-6)
    assert (model.head.fc[-1].weight == 0).all()
    config = model_config(model)                     # what checkpoints keep
    assert config["init_mean_face"] is True and np.shape(config["mean_face"]) == (68, 2)
    np.testing.assert_allclose(_first_points(model_from_config(config))[0], mean, atol=1e-6)
    plain = model_config(_tiny(68, mean_face=mean))  # training passes it; unused by default
    assert "mean_face" not in plain and "init_mean_face" not in plain
    assert np.abs(_first_points(_tiny(68))[0] - mean).max() > 1e-3
    assert "mean_face" in model_arguments("vanilla_cnn")


@pytest.mark.parametrize("kwargs, match", [
    ({"init_mean_face": True}, "needs mean_face"),
    ({"init_mean_face": True, "mean_face": np.zeros((5, 2))}, r"shape \(5, 2\), expected \(68, 2\)"),
    ({"init_mean_face": "yes"}, "expected true or false"),
])
def test_bad_init_arguments_say_what_is_wrong(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        _tiny(68, **kwargs)


def test_cross_protocol_heads_start_at_their_own_mean_faces():
    rng = np.random.default_rng(1)
    m68, m5 = rng.uniform(0.2, 0.8, (68, 2)), rng.uniform(0.2, 0.8, (5, 2))
    net = CrossProtocolNet({"a": model_config(_tiny(68, init_mean_face=True, mean_face=m68)),
                            "b": model_config(_tiny(5, init_mean_face=True, mean_face=m5))})
    with torch.no_grad():
        out = net.eval()(torch.rand(1, 3, 64, 64))
    np.testing.assert_allclose(out["a"]["coords"][0].numpy(), m68, atol=1e-6)
    np.testing.assert_allclose(out["b"]["coords"][0].numpy(), m5, atol=1e-6)
