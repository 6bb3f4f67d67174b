"""flowlab.mnist.inpainting: training-free completion by replacing the known region on its path."""
import pytest
import torch

from flowlab.mnist.inpainting import inpaint, known_region_error, top_half_mask
from flowlab.solvers import integrate
from flowlab.runtime.fixtures import CoupledTanhVelocity


def coupled(shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    draw = lambda: torch.randn(*shape, generator=generator)   # noqa: E731
    return CoupledTanhVelocity(draw(), draw(), draw())


@pytest.fixture
def images():
    generator = torch.Generator().manual_seed(1)
    return torch.rand(3, 1, 6, 6, generator=generator) * 2 - 1, torch.randn(3, 1, 6, 6, generator=generator)


def test_top_half_mask_marks_the_first_half_of_the_rows():
    mask = top_half_mask(torch.zeros(2, 1, 28, 28, dtype=torch.float64))
    assert mask.shape == (1, 1, 28, 1) and mask.dtype == torch.float64
    assert mask.flatten().tolist() == [1.0] * 14 + [0.0] * 14


def test_inpaint_keeps_the_known_region_and_fills_the_rest_from_it(images):
    known, x0 = images
    velocity, grid, mask = coupled((1, 6, 6)), torch.linspace(0, 1, 6), top_half_mask(known)
    filled = inpaint(velocity, known, mask, x0, grid)
    torch.testing.assert_close(filled[:, :, :3], known[:, :, :3])
    other = known.clone()
    other[:, :, :3] *= -1
    assert not torch.allclose(inpaint(velocity, other, mask, x0, grid)[:, :, 3:], filled[:, :, 3:])


def test_inpaint_with_nothing_known_is_euler_sampling(images):
    known, x0 = images
    velocity, grid = coupled((1, 6, 6)), torch.tensor([0.0, 0.3, 0.5, 1.0])
    torch.testing.assert_close(inpaint(velocity, known, torch.zeros(1), x0, grid), integrate(velocity, x0, grid, "euler"))


@pytest.mark.parametrize("mask, grid, message", [
    (torch.ones(2, 1, 6, 6), torch.linspace(0, 1, 3), "mask must broadcast"),
    (torch.ones(1), torch.linspace(1, 0, 3), "increasing"),
])
def test_inpaint_rejects_bad_masks_and_grids(images, mask, grid, message):
    known, x0 = images
    with pytest.raises(ValueError, match=message):
        inpaint(coupled((1, 6, 6)), known, mask, x0, grid)


def test_known_region_error_is_the_rms_over_the_known_pixels_of_each_image():
    images, known = torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)
    known[0, 0, 0] = torch.tensor([3.0, 4.0])   # known row of image 0: RMS of (3, 4) = sqrt(12.5)
    known[1, 0, 1] = 7.0                        # image 1 differs only where nothing is known
    error = known_region_error(images, known, torch.tensor([[1.0], [0.0]]))
    torch.testing.assert_close(error, torch.tensor([12.5 ** 0.5, 0.0]))
    with pytest.raises(ValueError, match="at least one known pixel"):
        known_region_error(images, known, torch.zeros(1))
