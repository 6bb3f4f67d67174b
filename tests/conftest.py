"""Shared pytest fixtures."""
import pytest
import torch

import user_level_python


@pytest.fixture(params=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def device(request) -> torch.device:
    """Run a test on the CPU and, where one is available, on the GPU."""
    return torch.device(request.param)


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Small tensors run 3-30x faster on one thread than on two competing ones (measured on 2 cores)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def every_user_python() -> str | None:
    """A Python every user may run, for jobs at the sandbox's ``user`` level (None: none here)."""
    python = user_level_python.for_every_user()
    yield python
    user_level_python.remove(python)
