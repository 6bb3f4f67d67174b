"""The 2D toy data sets: shapes, reproducibility, the geometry each promises, bad input."""
import numpy as np
import pytest
import torch

from flowlab.data import toy

N = 2000


@pytest.mark.parametrize("name", toy.NAMES)
def test_every_data_set_gives_finite_points_on_the_noise_scale(name):
    points = toy.sample(name, N, generator=0)
    assert points.shape == (N, 2)
    assert points.dtype == torch.float32
    assert torch.isfinite(points).all()
    assert points.abs().max() < 6, "toy data should live on roughly [-4, 4]^2, like N(0, I) noise"
    assert points.std(0).min() > 0.5, "the points should spread out, not collapse"


@pytest.mark.parametrize("name", toy.NAMES)
def test_same_seed_same_points_different_seed_different_points(name):
    first = toy.sample(name, 100, generator=7)
    torch.testing.assert_close(toy.sample(name, 100, generator=7), first, rtol=0, atol=0)
    from_generator = toy.sample(name, 100, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(from_generator, first, rtol=0, atol=0)
    assert not torch.equal(toy.sample(name, 100, generator=8), first)


@pytest.mark.parametrize("name", toy.NAMES)
def test_dtype_and_numpy_int_size(name):
    points = toy.sample(name, np.int64(10), generator=0, dtype=torch.float64)
    assert points.shape == (10, 2) and points.dtype == torch.float64


def test_checkerboard_points_lie_on_one_colour():
    """Every point falls in a 2 x 2 cell whose row + column has the same parity."""
    points = toy.sample("checkerboard", N, generator=1, dtype=torch.float64)
    cells = torch.floor((points + 4) / 2).long()
    assert cells.min() >= 0 and cells.max() <= 3
    parity = cells.sum(1) % 2
    assert (parity == parity[0]).all()
    assert len(torch.unique(cells, dim=0)) == 8, "all eight squares of one colour are used"


def test_eight_gaussians_sit_on_a_ring():
    points = toy.sample("8gaussians", N, generator=2, dtype=torch.float64)
    radius = points.norm(dim=1)
    assert abs(radius.median().item() - 3.0) < 0.1
    angles = torch.atan2(points[:, 1], points[:, 0])
    sector = torch.round(angles / (torch.pi / 4)).long() % 8
    assert len(torch.unique(sector)) == 8


def test_circles_have_two_radii():
    radius = toy.sample("circles", N, generator=3, dtype=torch.float64).norm(dim=1)
    inner, outer = radius[radius < 2.25], radius[radius >= 2.25]
    assert abs(inner.mean().item() - 1.5) < 0.1 and abs(outer.mean().item() - 3.0) < 0.1
    assert abs(len(inner) - len(outer)) <= 1


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match="unknown toy data set 'swissroll'") as error:
        toy.sample("swissroll", 10)
    for name in toy.NAMES:
        assert name in str(error.value)


@pytest.mark.parametrize("n", [0, -5, 2.5, "10", None])
def test_bad_size_raises(n):
    with pytest.raises(ValueError, match="n must be a positive int"):
        toy.sample("moons", n)
