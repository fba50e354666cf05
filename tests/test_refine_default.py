"""A model file may carry its own default number of refine passes (``refine_passes``),
set by ``facemark export --refine-passes N``; ``refine=None`` takes it, for both engines."""
import pytest
import torch

import facemark
from facemark.cli import main
from facemark.errors import ConfigError
from facemark.inference.landmarker import refine_passes


def test_refine_passes_takes_the_model_default_only_when_not_asked():
    assert refine_passes(None, "300w") == 1            # landmark crops: one pass by rule
    assert refine_passes(None, "300w", 0) == 0         # ... unless the model says otherwise
    assert refine_passes(None, "300w", "2") == 2       # ONNX metadata holds text
    assert refine_passes(True, "300w", 0) == 1         # an explicit request wins
    assert refine_passes(3, "300w", 0) == 3
    assert refine_passes(None, "300w", "junk") == 1    # unreadable: the rule's default
    assert refine_passes(None, "wflw", 2) == 0         # box-crop models never refine
    with pytest.raises(ConfigError):
        refine_passes(7, "300w")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from test_api import make_model_file

    torch.set_num_threads(1)
    return make_model_file(tmp_path_factory.mktemp("refine") / "tiny.pt")


def test_export_stores_the_default_and_both_engines_use_it(tiny, tmp_path):
    one_pass = tmp_path / "one_pass.pt"
    assert main(["export", str(tiny), "-o", str(one_pass), "--refine-passes", "0"]) == 0
    assert facemark.load(tiny, engine="torch").refine_ == 1
    assert facemark.load(one_pass, engine="torch").refine_ == 0
    assert facemark.load(one_pass, engine="torch", refine=2).refine_ == 2
    onnx = tmp_path / "one_pass.onnx"
    assert main(["export", str(one_pass), "-o", str(onnx)]) == 0
    assert facemark.load(onnx).refine_ == 0
    assert main(["export", str(tiny), "-o", str(tmp_path / "x.pt"), "--refine-passes", "9"]) == 2
    assert main(["export", str(tiny), "-o", str(tmp_path / "x.onnx"), "--refine-passes", "0"]) == 2
