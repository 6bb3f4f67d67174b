"""Sliced W2, energy distance and straightness on cases with known answers."""
import math

import pytest
import torch

from flowlab import schedules
from flowlab.metrics import energy_distance, sliced_wasserstein, straightness


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def cloud(n: int, d: int, device, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=generator(seed), dtype=torch.float64).to(device)


@pytest.mark.parametrize("d", [1, 2, 5])
def test_sliced_w2_of_a_shifted_copy_is_shift_over_sqrt_d(device, d):
    """Every projection moves by <s, theta>; E[<s, theta>^2] = |s|^2 / D over the sphere."""
    a = cloud(500, d, device)
    shift = torch.full((d,), 0.7, dtype=torch.float64, device=device)
    value = sliced_wasserstein(a, a + shift, n_proj=4000, generator=generator())
    expected = shift.norm().item() / math.sqrt(d)
    assert value == pytest.approx(expected, rel=0.05 if d > 1 else 1e-9)


def test_sliced_w2_is_zero_for_identical_sets_and_permutations(device):
    a = cloud(300, 3, device)
    assert sliced_wasserstein(a, a) == 0.0
    shuffled = a[torch.randperm(300, generator=generator(1)).to(device)]
    assert sliced_wasserstein(a, shuffled) == pytest.approx(0.0, abs=1e-12)


def test_sliced_w2_with_different_sizes_interpolates_quantiles(device):
    """A cloud and the same cloud repeated twice have identical empirical quantiles."""
    a = cloud(200, 2, device)
    assert sliced_wasserstein(a, torch.cat([a, a])) == pytest.approx(0.0, abs=0.02)
    shifted = torch.cat([a, a]) + torch.tensor([1.0, 0.0], dtype=torch.float64, device=device)
    assert sliced_wasserstein(a, shifted, n_proj=4000, generator=generator()) == pytest.approx(
        1 / math.sqrt(2), rel=0.05)


def test_sliced_w2_is_seeded_and_device_independent(device):
    a, b = cloud(100, 2, "cpu", 0), cloud(100, 2, "cpu", 1)
    first = sliced_wasserstein(a, b, generator=generator(3))
    assert first == sliced_wasserstein(a, b, generator=generator(3))
    assert sliced_wasserstein(a.to(device), b.to(device), generator=generator(3)) == pytest.approx(first, rel=1e-9)


def test_sliced_w2_separates_one_sample_from_another_distribution():
    a, b = cloud(2000, 2, "cpu", 0), cloud(2000, 2, "cpu", 1)
    same = sliced_wasserstein(a, b, generator=generator())
    wider = sliced_wasserstein(a, 2 * b, generator=generator())
    assert same < 0.1 < wider


def test_energy_distance_known_cases(device):
    a = cloud(400, 2, device)
    assert energy_distance(a, a) == pytest.approx(0.0, abs=1e-12)
    far = energy_distance(a, a + 3.0)
    near = energy_distance(a, cloud(400, 2, device, seed=1))
    assert far > 1.0 > 0.1 > near > 0


def test_energy_distance_of_two_points_in_1d():
    """a = {0}, b = {d}: 2|d| - 0 - 0."""
    assert energy_distance(torch.zeros(1, 1), torch.full((1, 1), 2.5)) == pytest.approx(5.0)


@pytest.mark.parametrize("chunk_size", [1, 7, 1024])
def test_energy_distance_chunks_do_not_change_the_value(chunk_size):
    a, b = cloud(50, 3, "cpu", 0), cloud(30, 3, "cpu", 1) + 0.5
    direct = (2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean()).item()
    assert energy_distance(a, b, chunk_size=chunk_size) == pytest.approx(direct, rel=1e-8)


@pytest.mark.parametrize("ts", [schedules.uniform(10), schedules.cosine(7)], ids=["uniform", "cosine"])
def test_straightness_is_zero_for_straight_uniform_speed_paths(ts):
    start, end = cloud(5, 2, "cpu", 0), cloud(5, 2, "cpu", 1)
    path = (1 - ts)[:, None, None] * start + ts[:, None, None] * end
    assert straightness(path, ts) == pytest.approx(0.0, abs=1e-20)


def test_straightness_of_a_half_circle():
    """x(t) = (cos(pi t), sin(pi t)): |x'| = pi, chord velocity (-2, 0), so
    int_0^1 |x' - u|^2 dt = pi^2 - 2 u.(x(1) - x(0)) + |u|^2 = pi^2 - 4."""
    ts = schedules.uniform(2000)
    path = torch.stack([torch.cos(math.pi * ts), torch.sin(math.pi * ts)], dim=1)[:, None, :]
    assert straightness(path, ts) == pytest.approx(math.pi ** 2 - 4, rel=1e-4)
    assert straightness(path.flip(0), ts.flip(0)) == pytest.approx(math.pi ** 2 - 4, rel=1e-4)


@pytest.mark.parametrize("call, error, match", [
    (lambda: sliced_wasserstein(torch.randn(5, 2), torch.randn(5, 3)), ValueError, "same point dimension"),
    (lambda: sliced_wasserstein(torch.randn(5), torch.randn(5)), ValueError, "a must have shape"),
    (lambda: sliced_wasserstein(torch.randn(5, 2), torch.randn(5, 2), n_proj=0), ValueError, "n_proj"),
    (lambda: sliced_wasserstein([[0.0, 1.0]], torch.randn(5, 2)), TypeError, "a must be a torch.Tensor"),
    (lambda: energy_distance(torch.randn(5, 2), torch.randint(0, 2, (5, 2))), TypeError, "floating"),
    (lambda: energy_distance(torch.randn(5, 2), torch.randn(5, 2), chunk_size=0), ValueError, "chunk_size"),
    (lambda: straightness(torch.randn(4, 3, 2), schedules.uniform(4)), ValueError, "one state per time"),
    (lambda: straightness(torch.randn(4, 3), schedules.uniform(3)), ValueError, "path must have shape"),
    (lambda: straightness(torch.randn(3, 3, 2), [0.0, 0.5, 0.5]), ValueError, "strictly"),
])
def test_bad_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()
