"""Shared pytest fixtures."""
import pytest
import torch


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
