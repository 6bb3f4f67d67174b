"""Shared pytest fixtures."""
import pytest
import torch


@pytest.fixture(params=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def device(request) -> torch.device:
    """Run a test on the CPU and, where one is available, on the GPU."""
    return torch.device(request.param)
