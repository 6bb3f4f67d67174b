"""Minibatch optimal-transport coupling: an exact assignment, the marginals kept, the batch sampler."""
import itertools

import pytest
import torch

from flowlab.coupling import ot_pairs, ot_sample_batch, total_squared_distance
from flowlab.train import Batch


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def brute_force_cost(x0: torch.Tensor, x1: torch.Tensor) -> float:
    """The least total squared distance over every permutation (tiny batches only)."""
    return min(total_squared_distance(x0, x1[list(order)]) for order in itertools.permutations(range(len(x1))))


@pytest.mark.parametrize("seed", range(4))
def test_ot_pairs_reach_the_brute_force_optimum(seed):
    x0, x1 = torch.randn(2, 6, 2, generator=generator(seed))
    noise, paired = ot_pairs(x0, x1)
    assert noise is x0
    assert total_squared_distance(noise, paired) == pytest.approx(brute_force_cost(x0, x1), rel=1e-12)


def test_ot_pairs_only_reorder_the_data():
    x0, x1 = torch.randn(2, 50, 3, generator=generator(1))
    _, paired = ot_pairs(x0, x1)
    sort = lambda points: points[torch.argsort(points[:, 0])]
    torch.testing.assert_close(sort(paired), sort(x1), rtol=0, atol=0)
    assert total_squared_distance(x0, paired) <= total_squared_distance(x0, x1)


def test_ot_pairs_ignore_the_order_of_the_data():
    x0, x1 = torch.randn(2, 40, 2, generator=generator(2))
    shuffled = x1[torch.randperm(40, generator=generator(3))]
    torch.testing.assert_close(ot_pairs(x0, shuffled)[1], ot_pairs(x0, x1)[1], rtol=0, atol=0)


def test_ot_pairs_of_shifted_copies_are_the_identity():
    """Data = noise + a common shift: moving every point by the shift is optimal (cyclical monotonicity)."""
    x0 = torch.randn(30, 2, generator=generator(4))
    _, paired = ot_pairs(x0, (x0 + torch.tensor([5.0, -1.0])).flip(0))
    torch.testing.assert_close(paired, x0 + torch.tensor([5.0, -1.0]))


def test_ot_pairs_of_images_and_float64():
    x0, x1 = torch.randn(2, 8, 1, 3, 3, generator=generator(5), dtype=torch.float64)
    _, paired = ot_pairs(x0, x1)
    assert paired.shape == x1.shape and paired.dtype == torch.float64
    assert total_squared_distance(x0, paired) == pytest.approx(brute_force_cost(x0, x1), rel=1e-12)


def test_ot_pairs_reject_mismatched_batches():
    with pytest.raises(ValueError, match="shapes must match"):
        ot_pairs(torch.zeros(4, 2), torch.zeros(5, 2))


def moons_like(n: int, generator: torch.Generator) -> torch.Tensor:
    return 3.0 + 0.1 * torch.randn(n, 2, generator=generator)


@pytest.mark.parametrize("block_size", [None, 16])
def test_ot_sample_batch_pairs_within_each_block(block_size):
    batch = ot_sample_batch(moons_like, block_size=block_size)(64, generator(6))
    assert isinstance(batch, Batch) and batch.x0.shape == batch.x1.shape == (64, 2)
    size = block_size or 64
    for start in range(0, 64, size):
        block = slice(start, start + size)
        assert total_squared_distance(batch.x0[block], batch.x1[block]) == pytest.approx(
            total_squared_distance(*ot_pairs(batch.x0[block], batch.x1[block])), rel=1e-12)


def test_ot_sample_batch_is_seeded_and_keeps_the_marginals():
    draw = ot_sample_batch(moons_like)
    first, again = draw(32, generator(7)), draw(32, generator(7))
    torch.testing.assert_close(first.x1, again.x1)
    torch.testing.assert_close(first.x0, again.x0)
    data = moons_like(32, generator(7))                     # the same data draw, before the noise
    sort = lambda points: points[torch.argsort(points[:, 0])]
    torch.testing.assert_close(sort(first.x1), sort(data))


def test_ot_sample_batch_rejects_a_bad_block_size():
    with pytest.raises(ValueError, match="block_size"):
        ot_sample_batch(moons_like, block_size=0)
