"""Training on smaller crops too (``data.smaller_sizes``): targets on the smaller grid, the
shrunk batches, the checks, and a run that trains on them."""
import numpy as np
import pytest
import torch

from facemark.errors import ConfigError
from facemark.models import create_model
from facemark.training.config import load_config
from facemark.training.module import LandmarkModule, check_smaller_sizes

N = 5
MEAN_FACE = np.random.default_rng(0).random((N, 2))


def pipnet(name="pipnet", **kw):
    return create_model(name, num_points=N, input_size=128, backbone="resnet18",
                        mean_face=MEAN_FACE, num_nb=2, **kw)


def test_targets_at_a_smaller_size_decode_to_the_landmarks():
    model = pipnet()
    lm = torch.rand(3, N, 2)
    own = model.encode(lm)
    small = model.encode(lm, input_size=96)
    assert own["score"].shape[-2:] == (4, 4) and small["score"].shape[-2:] == (3, 3)
    assert small["nb_x"].shape == (3, 2 * N, 3, 3)
    keys = ("score", "offset_x", "offset_y", "nb_x", "nb_y")
    points, _ = model.decode({k: small[k] for k in keys})
    torch.testing.assert_close(points, lm, atol=2e-6, rtol=0)
    # the model's own size is the plain encode
    same = model.encode(lm, input_size=128)
    assert all(torch.equal(same[k], own[k]) for k in keys)


def test_sizes_the_model_cannot_train_on_name_the_key():
    model = pipnet()
    assert check_smaller_sizes(model, [96, 64], 0.5) == [96, 64]
    assert check_smaller_sizes(model, None, 0.5) == []
    for sizes, match in (([100], "multiple of 32"), ([160], "multiple of 32 from 32 to 128"),
                         ([128], "the model's own input size")):
        with pytest.raises(ConfigError, match=rf"data.smaller_sizes.*{match}"):
            check_smaller_sizes(model, sizes, 0.5)
    with pytest.raises(ConfigError, match="data.smaller_p"):
        check_smaller_sizes(model, [96], 1.5)
    with pytest.raises(ConfigError, match="STCHead trains on 128 px crops only"):
        check_smaller_sizes(pipnet("pipnet_stc"), [96], 0.5)
    with pytest.raises(ConfigError, match="encodes targets for 128 px crops only"):
        pipnet("pipnet_stc").encode(torch.rand(1, N, 2), input_size=96)


def test_batches_are_shrunk_with_the_given_probability():
    model = pipnet()
    config = {"name": "pipnet", **model.config}
    optim = {"optimizer": "adam", "lr": 1e-3}
    images = torch.rand(2, 3, 128, 128)
    torch.manual_seed(0)
    never = LandmarkModule(config, "300w68", optim, smaller_sizes=[96, 64], smaller_p=0.0)
    assert all(never.training_images(images)[1] is None for _ in range(20))
    always = LandmarkModule(config, "300w68", optim, smaller_sizes=[96, 64], smaller_p=1.0)
    seen = set()
    for _ in range(40):
        shrunk, size = always.training_images(images)
        assert shrunk.shape == (2, 3, size, size)
        seen.add(size)
    assert seen == {96, 64}
    half = LandmarkModule(config, "300w68", optim, smaller_sizes=[96], smaller_p=0.5)
    shrunk = sum(half.training_images(images)[1] is not None for _ in range(400))
    assert 150 < shrunk < 250
    # a constant image stays constant and a centred blob stays centred: no shift
    blob = torch.zeros(1, 3, 128, 128)
    blob[..., 48:80, 48:80] = 1.0
    small, _ = always.training_images(blob)
    ys, xs = torch.nonzero(small[0, 0] > 0.5, as_tuple=True)
    centre = small.shape[-1] / 2 - 0.5
    assert abs(xs.float().mean() - centre) < 1e-4 and abs(ys.float().mean() - centre) < 1e-4


@pytest.mark.slow   # trains a model end to end
def test_a_run_trains_on_the_smaller_size(tmp_path, monkeypatch):
    from test_training import tiny_config

    from facemark.models.model import LandmarkModel
    from facemark.training.run import train

    torch.set_num_threads(1)
    sizes = []
    original = LandmarkModel.encode

    def spy(self, landmarks, mask=None, input_size=None):
        sizes.append(input_size)
        return original(self, landmarks, mask, input_size=input_size)

    monkeypatch.setattr(LandmarkModel, "encode", spy)
    cfg = load_config(tiny_config(tmp_path, epochs=1),
                      ["data.smaller_sizes=[32]", "data.smaller_p=1.0"])
    result = train(cfg)
    assert sizes and set(sizes) == {32}                  # every batch at 32 px (grid 1)
    assert result.best_val_nme is not None and np.isfinite(result.best_val_nme)
    ckpt = torch.load(result.last_checkpoint, map_location="cpu", weights_only=False)
    assert ckpt["hyper_parameters"]["smaller_sizes"] == [32]   # a resume keeps them


def test_norm_eval_keeps_batch_norm_statistics_while_training():
    model = pipnet()
    config = {"name": "pipnet", **model.config}
    for norm_eval in (False, True):
        torch.manual_seed(0)
        module = LandmarkModule(config, "300w68", {"optimizer": "adam", "lr": 1e-3,
                                                  "norm_eval": norm_eval})
        module.train()
        bns = [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        before = [b.running_mean.clone() for b in bns]
        batch = {"image": torch.rand(2, 3, 128, 128), "landmarks": torch.rand(2, N, 2),
                 "mask": torch.ones(2, N, dtype=torch.bool), "index": torch.arange(2)}
        module.log = lambda *a, **k: None      # outside a Trainer
        module.training_step(batch, 0).backward()
        moved = any(not torch.equal(b.running_mean, m) for b, m in zip(bns, before))
        assert moved != norm_eval
        assert all(b.training != norm_eval for b in bns) and module.model.head.training
        grads = [p.grad for p in module.model.parameters() if p.grad is not None]
        assert grads   # the weights (batch norm's affine ones included) still learn


@pytest.mark.slow   # trains a model end to end
def test_norm_eval_holds_in_a_lightning_run(tmp_path):
    """Lightning keeps the modes the module had (it never calls train()): the statistics of
    a fresh model (mean 0, variance 1) must come out of a run with norm_eval untouched,
    validation included; without it they move."""
    from test_training import tiny_config

    from facemark.training.run import train

    torch.set_num_threads(1)
    for norm_eval in (True, False):
        cfg = load_config(tiny_config(tmp_path / str(norm_eval), epochs=2),
                          [f"optim.norm_eval={str(norm_eval).lower()}"])
        result = train(cfg)
        state = torch.load(result.last_checkpoint, map_location="cpu",
                           weights_only=False)["state_dict"]
        means = [v for k, v in state.items() if k.endswith("running_mean")]
        kept = all(torch.equal(m, torch.zeros_like(m)) for m in means)
        assert means and kept == norm_eval
