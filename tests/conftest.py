"""Shared test helpers: where the third-party fixtures live, seeded generators, torch threads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = (ROOT.parent / "shared" / "fixtures").resolve()

# One intra-op thread: on 2 shared cores, two threads made the solver tests ~10x slower.
torch.set_num_threads(1)


def fixture_path(*parts: str) -> Path:
    """Path of a file under ../shared/fixtures; skips the test (saying why) when it is absent."""
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"third-party fixture {path} is absent (../shared/fixtures not beside the repo)")
    return path


@pytest.fixture
def one_thread():
    """One intra-op thread for the test, restored after it (a test elsewhere may have set
    another): tiny tensors on the shared 2-core box, where two threads oversubscribe. Solver
    test modules take it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def no_stage(monkeypatch):
    """Every pipeline stage fails loudly: for messages and validation that must stop a run
    before any work."""
    import sbc_deploy.pipeline as pipeline

    def never(*args, **kwargs):
        raise AssertionError("a stage ran before validation finished")

    for name in ("_evaluate_float", "calibrate", "compress", "check", "staged_output"):
        monkeypatch.setattr(pipeline, name, never)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
