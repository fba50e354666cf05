"""One optimiser and schedule for every trainer (facemark/training/optim.py): the learning
rate each epoch for supervised training (torch's schedulers without warm-up, the factor with
it) and for cross-protocol training's groups (one in stage 1, backbone + head in stage 2)."""
import math

import pytest
import torch

from facemark.models import create_model, model_config
from facemark.training.cross_protocol import CrossProtocolModule, FinetuneModule
from facemark.training.module import LandmarkModule
from facemark.training.optim import build_optimizer, lr_factor

torch.set_num_threads(1)

OPTIM = {"optimizer": "sgd", "lr": 1e-2, "min_lr": 5e-5, "momentum": 0.9,
         "weight_decay": 5e-4, "schedule": "cosine", "milestones": [3, 5], "gamma": 0.1,
         "epochs": 8, "warmup_epochs": 0}


def _config(n: int) -> dict:
    with torch.device("meta"):
        model = create_model("coordnet", num_points=n, backbone="mobilenet_v2", input_size=64,
                             pool="avg", hidden=[8])
    return model_config(model)


def _lrs(conf, epochs: int = 10) -> list[list[float]]:
    """Every group's learning rate in epochs 0 .. epochs-1."""
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    out = []
    for _ in range(epochs):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


def _cosine(e: int, span: int, lr: float, min_lr: float) -> float:
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * min(e, span) / span))


@pytest.mark.parametrize("schedule", ["cosine", "multistep"])
def test_supervised_without_warmup_keeps_torch_schedulers(schedule):
    conf = LandmarkModule(_config(5), "face5", {**OPTIM, "schedule": schedule}
                          ).configure_optimizers()
    kind = {"cosine": torch.optim.lr_scheduler.CosineAnnealingLR,
            "multistep": torch.optim.lr_scheduler.MultiStepLR}[schedule]
    assert type(conf["lr_scheduler"]["scheduler"]) is kind  # checkpoints hold its state
    assert conf["lr_scheduler"]["interval"] == "epoch"
    lrs = [g[0] for g in _lrs(conf, 9)]
    if schedule == "cosine":
        expected = [_cosine(e, 8, 1e-2, 5e-5) for e in range(9)]
    else:
        expected = [1e-2, 1e-2, 1e-2, 1e-3, 1e-3, 1e-4, 1e-4, 1e-4, 1e-4]
    assert lrs == pytest.approx(expected, rel=1e-9)


def test_supervised_constant_without_warmup_is_the_optimiser_alone():
    opt = LandmarkModule(_config(5), "face5", {**OPTIM, "schedule": "constant",
                                               "optimizer": "adamw"}).configure_optimizers()
    assert type(opt) is torch.optim.AdamW and opt.param_groups[0]["lr"] == 1e-2


@pytest.mark.parametrize("schedule, after_warmup", [
    # cosine over the remaining 8 - 2 = 6 epochs, from lr to min_lr, then min_lr
    ("cosine", [_cosine(e, 6, 1e-2, 5e-5) for e in range(8)]),
    # milestones 3 and 5 counted from the end of the warm-up: epochs 5 and 7
    ("multistep", [1e-2, 1e-2, 1e-2, 1e-3, 1e-3, 1e-4, 1e-4, 1e-4]),
    ("constant", [1e-2] * 8),
])
def test_supervised_warmup_then_schedule(schedule, after_warmup):
    conf = LandmarkModule(_config(5), "face5", {**OPTIM, "schedule": schedule,
                                                "warmup_epochs": 2}).configure_optimizers()
    assert type(conf["lr_scheduler"]["scheduler"]) is torch.optim.lr_scheduler.LambdaLR
    lrs = [g[0] for g in _lrs(conf)]
    assert lrs == pytest.approx([1e-2 / 3, 2e-2 / 3] + after_warmup, rel=1e-9)


def test_cross_protocol_stage1_one_group_scaled_by_the_factor():
    heads = {"a": {"model_config": _config(68), "scheme": "300w68"},
             "b": {"model_config": _config(5), "scheme": "face5"}}
    module = CrossProtocolModule(heads, {**OPTIM, "warmup_epochs": 3})
    conf = module.configure_optimizers()
    opt = conf["optimizer"]
    assert len(opt.param_groups) == 1
    assert sum(p.numel() for p in opt.param_groups[0]["params"]) == \
        sum(p.numel() for p in module.parameters())
    lrs = [g[0] for g in _lrs(conf)]
    expected = [1e-2 / 4, 2e-2 / 4, 3e-2 / 4] + [_cosine(e, 5, 1e-2, 5e-5) for e in range(7)]
    assert lrs == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("schedule", ["cosine", "multistep"])
def test_cross_protocol_finetune_two_groups_keep_their_ratio(schedule):
    module = FinetuneModule(_config(5), "face5", {**OPTIM, "schedule": schedule},
                            backbone_lr=1e-7)
    conf = module.configure_optimizers()
    opt = conf["optimizer"]
    assert type(conf["lr_scheduler"]["scheduler"]) is torch.optim.lr_scheduler.LambdaLR
    assert sum(p.numel() for p in opt.param_groups[0]["params"]) == \
        sum(p.numel() for p in module.model.backbone.parameters())
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == \
        sum(p.numel() for p in module.parameters())
    lrs = _lrs(conf, 9)
    factors = [lr_factor({**OPTIM, "schedule": schedule})(e) for e in range(9)]
    if schedule == "cosine":  # 1 -> min_lr / lr = 5e-3 for both groups, not an absolute eta_min
        assert factors == pytest.approx([_cosine(e, 8, 1.0, 5e-3) for e in range(9)], rel=1e-12)
    else:
        assert factors == pytest.approx([1, 1, 1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01])
    assert [g[0] for g in lrs] == pytest.approx([1e-7 * f for f in factors], rel=1e-9)
    assert [g[1] for g in lrs] == pytest.approx([1e-2 * f for f in factors], rel=1e-9)


def test_plain_parameters_or_groups_give_the_same_schedule():
    p, q = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optim = {**OPTIM, "optimizer": "adam", "warmup_epochs": 1}
    plain = _lrs(build_optimizer([p], optim))
    grouped = _lrs(build_optimizer([{"params": [q], "lr": optim["lr"]}], optim))
    assert plain == grouped
