"""Brute-force SepBN (SepBN paper Fig. 2, Table II): routing by domain label, best-of-K
oracle testing, training with dataset labels; the parameter-similarity analysis (Eq. 2)."""
import numpy as np
import pytest
import torch
from torch import nn

from facemark.errors import ConfigError, FacemarkError
from facemark.evaluation.sepbn import (
    OracleResult, best_of_k_points, mean_pairwise_cosine, parameter_similarity)
from facemark.models import create_model
from facemark.models.backbones import create_backbone
from facemark.models.norm import (
    DomainBN, DomainLabelError, domain_context, num_domains, set_domain)

torch.set_num_threads(1)


def test_each_sample_goes_through_its_own_branch_only():
    torch.manual_seed(0)
    layer = DomainBN(4, num_domains=3)
    x = torch.randn(6, 4, 3, 3) * 2 + 1
    labels = torch.tensor([2, 0, 2, 1, 0, 2])
    set_domain(layer, labels)
    y = layer(x)
    for k in range(3):
        ref = nn.BatchNorm2d(4)
        expected = ref(x[labels == k])
        assert torch.allclose(y[labels == k], expected, atol=1e-5)
        # each branch tracked the statistics of its own samples only
        assert torch.allclose(layer.branches[k].running_mean, ref.running_mean, atol=1e-6)
        assert int(layer.branches[k].num_batches_tracked) == 1


def test_gradients_reach_only_the_branches_that_saw_samples():
    layer = DomainBN(3, num_domains=3)
    with torch.no_grad():
        for b in layer.branches:
            b.weight.uniform_(0.5, 1.5)
    set_domain(layer, torch.tensor([0, 0, 2, 2]))
    (layer(torch.randn(4, 3, 2, 2)) ** 2).sum().backward()
    assert layer.branches[0].weight.grad.abs().sum() > 0
    assert layer.branches[2].weight.grad.abs().sum() > 0
    assert layer.branches[1].weight.grad is None


def test_one_label_for_the_batch_and_eval_mode():
    layer = DomainBN(2, num_domains=2).eval()
    with torch.no_grad():
        layer.branches[1].bias.fill_(3.0)
    x = torch.zeros(2, 2, 1, 1)
    with domain_context(layer, 1):
        assert torch.allclose(layer(x), torch.full_like(x, 3.0))
    assert layer.domain is None


def test_missing_or_bad_labels_raise_one_line_errors():
    layer = DomainBN(2, num_domains=2)
    x = torch.randn(2, 2, 2, 2)
    with pytest.raises(DomainLabelError, match="needs each face's domain label") as e:
        layer(x)
    assert isinstance(e.value, FacemarkError) and "\n" not in str(e.value)
    set_domain(layer, torch.tensor([0, 2]))
    with pytest.raises(DomainLabelError, match=r"2 branches \(domains 0..1\), got domain label 2"):
        layer(x)
    set_domain(layer, torch.tensor([0]))
    with pytest.raises(DomainLabelError, match="1 domain labels for a batch of 2"):
        layer(x)
    with pytest.raises(ConfigError, match="num_domains"):
        DomainBN(2, num_domains=0)


def test_registered_names_build_backbones_with_placement():
    trunk = create_backbone("vanilla", norm_layer="sepbn_brute")
    assert num_domains(trunk) == 3 and sum(isinstance(m, DomainBN) for m in trunk.modules()) == 6
    trunk = create_backbone("mobilenet_v2", norm_layer="sepbn_brute_k2",
                            norm_placement={"positions": ["bn3"]})
    assert num_domains(trunk) == 2 and sum(isinstance(m, DomainBN) for m in trunk.modules()) == 17


def tiny_model(norm="sepbn_brute_k2"):
    torch.manual_seed(0)
    return create_model("coordnet", num_points=19, backbone="vanilla", input_size=64,
                        pool="avg", hidden=[], norm_layer=norm)


def test_best_of_k_picks_each_faces_lowest_error_branch():
    model = tiny_model().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, DomainBN):
                m.branches[1].weight.mul_(0.5)     # branch 1 differs
    images = torch.rand(3, 3, 64, 64)
    truth = np.random.default_rng(0).uniform(0.2, 0.8, size=(3, 19, 2))
    points, errors = best_of_k_points(model, images, truth, "aflw19")
    assert errors.shape == (3, 2)
    for i in range(3):
        k = int(np.argmin(errors[i]))
        with domain_context(model, k), torch.no_grad():
            expected, _ = model.predict(images[i:i + 1])
        assert np.allclose(points[i], expected[0].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="brute-force"):
        best_of_k_points(tiny_model("batchnorm"), images, truth, "aflw19")


def test_oracle_report_is_labelled_and_counts_picks():
    errors = np.array([[0.05, 0.02], [0.01, 0.03], [0.2, 0.3]])
    result = OracleResult(errors=errors, names=["branch 0", "branch 1"])
    assert np.allclose(result.best, [0.02, 0.01, 0.2])
    assert result.chosen.tolist() == [1, 0, 0]
    md = result.to_markdown()
    assert "ORACLE" in md and "| every face through branch 1 | 11.67 |" in md
    assert "| 2 |" in md and "| 1 |" in md


def test_training_routes_faces_by_their_dataset():
    from facemark.training.module import LandmarkModule
    from facemark.models.registry import model_config

    model = tiny_model()
    module = LandmarkModule(model_config(model), "aflw19",
                            {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9,
                             "weight_decay": 0.0, "schedule": "none", "epochs": 1})
    assert module.num_domains == 2
    batch = {"image": torch.rand(4, 3, 64, 64),
             "landmarks": torch.rand(4, 19, 2), "mask": torch.ones(4, 19, dtype=torch.bool),
             "index": torch.arange(4), "domain": torch.tensor([0, 1, 1, 0])}
    module.train()
    loss = module.training_step(batch, 0)
    loss.backward()
    layers = [m for m in module.model.modules() if isinstance(m, DomainBN)]
    assert all(int(b.num_batches_tracked) == 1 for m in layers for b in m.branches)
    module.on_train_batch_end(None, batch, 0)
    assert all(m.domain is None for m in layers)
    module.eval()
    module.validation_step(batch, 0)                     # best of K, no label needed
    assert len(module._val_pred) == 1


def test_similarity_is_one_for_equal_branches_and_lower_for_different_ones(tmp_path):
    assert mean_pairwise_cosine(torch.ones(3, 8)) == pytest.approx(1.0)
    assert mean_pairwise_cosine(torch.zeros(3, 8)) == 1.0       # equal (fresh shifts)
    assert mean_pairwise_cosine(torch.tensor([[0.0, 0.0], [1.0, 0.0]])) == 0.0
    sets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    expected = (0.0 + 2 ** -0.5 + 2 ** -0.5) / 3              # Eq. 2 by hand
    assert mean_pairwise_cosine(sets) == pytest.approx(expected)

    model = tiny_model("sepbn_brute").eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, DomainBN):
                for k, b in enumerate(m.branches):
                    b.running_mean.fill_(1.0)
                    b.weight.copy_(torch.randn(b.weight.shape))
    result = parameter_similarity(model, 64)
    assert len(result.layers) == 6
    assert [r[0] for r in result.resolution] == [64, 32, 16, 8, 4, 2]
    assert all(v == pytest.approx(1.0) for v in result.similarity["running_mean"])
    assert all(v < 0.9 for v in result.similarity["weight"])
    md = result.to_markdown()
    assert "| backbone.features.0.bn | DomainBN | 64 | 64x64 |" in md
    result.plot(tmp_path / "sim.png")
    assert (tmp_path / "sim.png").stat().st_size > 1000


def test_similarity_covers_mixbn_and_sepbn_and_refuses_plain_models():
    result = parameter_similarity(tiny_model("sepbn"), 64)
    assert all(np.isnan(v) for v in result.similarity["running_var"])   # shared statistics
    assert all(v == pytest.approx(1.0) for v in result.similarity["weight"])  # fresh: equal
    result = parameter_similarity(tiny_model("mixbn"), 64)
    assert result.kind == ["MixBN"] * 6
    with pytest.raises(ValueError, match="no layer with separate"):
        parameter_similarity(tiny_model("batchnorm"), 64)


def test_analyze_cli_similarity_and_oracle(tmp_path, capsys):
    from synthetic import make_pts_dataset

    from facemark.cli import main
    from facemark.models.model_file import ModelInfo, save_model

    torch.manual_seed(0)
    model = create_model("coordnet", num_points=68, backbone="vanilla", input_size=64,
                         pool="avg", hidden=[], norm_layer="sepbn_brute_k2")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, DomainBN):
                m.branches[1].weight.uniform_(0.5, 1.5)
    info = ModelInfo(scheme="300w68", input_size=64, crop_rule="300w", model_config={})
    path = save_model(model, info, tmp_path / "brute.pt")
    data = make_pts_dataset(tmp_path / "faces", n=3)
    out = tmp_path / "out"
    assert main(["analyze", "similarity", f"brute={path}", "--out", str(out)]) == 0
    text = (out / "bn_similarity.md").read_text()
    assert "| backbone.features.5.bn | DomainBN | 2048 | 2x2 |" in text
    assert (out / "bn_similarity.png").stat().st_size > 1000
    assert main(["analyze", "oracle", str(path), "--data", str(data), "--out", str(out)]) == 0
    text = (out / "best_of_k_oracle.md").read_text()
    assert "ORACLE" in text and "every face through branch 1" in text
    assert (out / "best_of_k_oracle.png").is_file()
    plain = save_model(create_model("coordnet", num_points=68, backbone="vanilla",
                                    input_size=64, pool="avg", hidden=[]), info,
                       tmp_path / "plain.pt")
    capsys.readouterr()
    assert main(["analyze", "similarity", str(plain)]) == 2
    assert "no layer with separate BatchNorm" in capsys.readouterr().err


def test_branch_convolution_before_the_head_fig5():
    from facemark.models.registry import model_config
    from facemark.models.cross_protocol import CrossProtocolNet

    plain = create_model("coordnet", num_points=19, backbone="vanilla", input_size=64,
                         pool="avg", hidden=[])
    model = create_model("coordnet", num_points=19, backbone="vanilla", input_size=64,
                         pool="avg", hidden=[], branch_conv=1)
    assert plain.head.branch is None and "branch_conv" not in model_config(plain)
    assert model.head.branch[0].kernel_size == (1, 1) and model_config(model)["branch_conv"] == 1
    assert model(torch.rand(2, 3, 64, 64))["coords"].shape == (2, 19, 2)
    with pytest.raises(ConfigError, match="odd kernel size"):
        create_model("coordnet", num_points=19, backbone="vanilla", input_size=64, branch_conv=2)
    # cross-protocol: every head (dataset) has a convolution of its own on the shared features
    config = model_config(model)
    net = CrossProtocolNet({"a": config, "b": {**config, "num_points": 29}})
    conv_a, conv_b = net.heads["a"].branch[0], net.heads["b"].branch[0]
    assert conv_a is not conv_b and conv_a.weight.shape == (2048, 2048, 1, 1)


def test_warmup_epochs_then_cosine():
    from facemark.training.optim import build_optimizer

    optim = {"optimizer": "sgd", "lr": 1.0, "min_lr": 0.0, "momentum": 0.9,
             "weight_decay": 0.0, "schedule": "cosine", "milestones": [], "gamma": 0.1,
             "epochs": 6, "warmup_epochs": 2}
    p = nn.Parameter(torch.zeros(1))
    out = build_optimizer([{"params": [p], "lr": 1.0}], optim)
    opt, sched = out["optimizer"], out["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    # warm-up 1/3, 2/3, then cosine over the remaining 4 epochs: 1, 0.854, 0.5, 0.146
    assert np.allclose(lrs, [1 / 3, 2 / 3, 1.0, 0.8535534, 0.5, 0.1464466], atol=1e-6)
