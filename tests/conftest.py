"""Fixtures shared by the test files, and ``tests/`` on ``sys.path`` so that the helpers
(``synthetic``, ``blink_clip``) and other test files' fixtures import by name."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for the module's tests (timings and results that do not depend on
    the machine's cores); the old number afterwards."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
