"""Flow-matching loss, label dropout, EMA, the training loop, and the shipped moons checkpoint."""
import copy

import pytest
import torch

from flowlab import pretrained, schedules
from flowlab.data import GaussianMixture, toy
from flowlab.metrics import sliced_wasserstein
from flowlab.models import MLP
from flowlab.solvers import integrate
from flowlab.train import EMA, Batch, cfg_loss, flow_matching_loss, label_dropout, sgd_step, train, train_toy


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def small_model(device, seed: int = 0, **kwargs) -> MLP:
    torch.manual_seed(seed)
    return MLP(hidden=32, depth=2, time_embedding_dim=8, **kwargs).to(device)


def test_loss_is_zero_for_the_oracle_velocity(device):
    """Given x0, the conditional velocity x1 - x0 is recoverable from x_t: (x1 - x_t) / (1 - t)."""
    x1, x0 = torch.randn(16, 2, device=device), torch.randn(16, 2, device=device)
    t = torch.rand(16, generator=generator()).mul(0.9).to(device)

    def oracle(x, t):
        return (x1 - x) / (1 - t)[:, None]

    assert flow_matching_loss(oracle, x1, x0=x0, t=t).item() == pytest.approx(0.0, abs=1e-10)


def test_loss_is_the_mean_squared_norm(device):
    """The zero model scores E||x1 - x0||^2, summed over dimensions, averaged over the batch."""
    x1, x0 = torch.randn(8, 3, 2, device=device), torch.randn(8, 3, 2, device=device)
    zero = lambda x, t: torch.zeros_like(x)
    expected = (x1 - x0).pow(2).sum((1, 2)).mean()
    torch.testing.assert_close(flow_matching_loss(zero, x1, x0=x0, t=torch.rand(8, device=device)), expected)


def test_loss_draws_noise_and_time_from_the_generator(device):
    model, x1 = small_model(device), torch.randn(32, 2, device=device)
    first = flow_matching_loss(model, x1, generator=generator(4))
    assert first.item() == flow_matching_loss(model, x1, generator=generator(4)).item()
    assert first.item() != flow_matching_loss(model, x1, generator=generator(5)).item()


def test_loss_at_the_exact_velocity_is_its_minimum():
    """The exact marginal velocity of a Gaussian mixture beats a slightly perturbed one."""
    mixture = GaussianMixture.ring(k=4, radius=2.0, std=0.3)
    x1 = mixture.sample(20000, generator=generator(), dtype=torch.float32)
    exact = flow_matching_loss(mixture.velocity, x1, generator=generator(1))
    perturbed = flow_matching_loss(lambda x, t: 1.1 * mixture.velocity(x, t), x1, generator=generator(1))
    assert exact < perturbed


def test_loss_passes_labels_and_checks_the_output_shape():
    model = MLP(hidden=8, depth=1, num_classes=3)
    x1, x0, t = torch.randn(4, 2), torch.randn(4, 2), torch.rand(4)
    with_labels = flow_matching_loss(model, x1, x0=x0, t=t, y=torch.tensor([0, 1, 2, 0]))
    assert with_labels != flow_matching_loss(model, x1, x0=x0, t=t)
    with pytest.raises(ValueError, match="shaped like x1"):
        flow_matching_loss(lambda x, t: x[:, :1], x1)
    with pytest.raises(ValueError, match="shapes must match"):
        flow_matching_loss(model, x1, x0=torch.randn(4, 3))


def test_label_dropout_rate_and_null_label(device):
    y = torch.arange(10, device=device).repeat(2000)
    dropped = label_dropout(y, 0.3, null_label=10, generator=generator())
    is_null = dropped == 10
    assert is_null.float().mean().item() == pytest.approx(0.3, abs=0.02)
    assert torch.equal(dropped[~is_null], y[~is_null])
    assert torch.equal(label_dropout(y, 0.0, 10), y)
    assert (label_dropout(y, 1.0, 10) == 10).all()
    with pytest.raises(ValueError, match="probability"):
        label_dropout(y, 1.5, 10)
    with pytest.raises(ValueError, match="integer labels"):
        label_dropout(y.float(), 0.5, 10)


def test_ema_follows_the_formula():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = EMA(model, decay=0.9, warmup=False)
    for value in (3.0, 5.0):
        with torch.no_grad():
            model.weight.fill_(value)
        ema.update()
    expected = 0.9 * (0.9 * 1.0 + 0.1 * 3.0) + 0.1 * 5.0
    torch.testing.assert_close(ema.model.weight, torch.full((1, 2), expected))
    assert not ema.model.weight.requires_grad


def test_ema_warmup_decay():
    ema = EMA(torch.nn.Linear(2, 1), decay=0.999)
    decays = []
    for _ in range(3):
        decays.append(ema.current_decay())
        ema.update()
    assert decays == pytest.approx([1 / 10, 2 / 11, 3 / 12])
    ema.updates = 10**6
    assert ema.current_decay() == 0.999


def gaussian_data(n: int, generator: torch.Generator) -> torch.Tensor:
    return 0.5 * torch.randn(n, 2, generator=generator) + torch.tensor([2.0, -1.0])


def test_a_few_steps_lower_the_loss(device):
    model = small_model(device)
    before = flow_matching_loss(model, gaussian_data(4096, generator(9)).to(device), generator=generator(10))
    result = train(model, gaussian_data, steps=150, batch_size=128, lr=3e-3, generator=0, progress=False)
    after = flow_matching_loss(result.model, gaussian_data(4096, generator(9)).to(device), generator=generator(10))
    assert after < 0.8 * before
    assert len(result.losses) == 150
    assert result.settings["steps"] == 150 and not result.ema_model.training


def test_same_seed_gives_the_same_weights(device):
    results = [train(small_model(device), gaussian_data, steps=20, batch_size=32, generator=seed,
                     progress=False) for seed in (1, 1, 2)]
    weights = [torch.cat([p.flatten() for p in r.ema_model.parameters()]) for r in results]
    assert torch.equal(weights[0], weights[1])
    assert not torch.equal(weights[0], weights[2])


def test_training_accepts_labels_pairs_and_label_dropout():
    labelled = lambda n, g: (gaussian_data(n, g), torch.randint(0, 3, (n,), generator=g))
    result = train(small_model("cpu", num_classes=3), labelled, steps=3, batch_size=8, generator=0,
                   progress=False, label_dropout_p=0.5)
    assert len(result.losses) == 3
    paired = lambda n, g: Batch(x1=gaussian_data(n, g), x0=torch.zeros(n, 2))
    assert len(train(small_model("cpu"), paired, steps=2, batch_size=8, progress=False).losses) == 2


@pytest.mark.parametrize("kwargs, error, match", [
    ({"steps": -1}, ValueError, "steps"),
    ({"steps": 1, "batch_size": 0}, ValueError, "batch_size"),
    ({"steps": 1, "label_dropout_p": 0.1}, ValueError, "null_label"),
    ({"steps": 1, "generator": "seed"}, TypeError, "generator"),
])
def test_train_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        train(small_model("cpu"), gaussian_data, progress=False, **kwargs)


def test_train_rejects_a_bad_sampler():
    with pytest.raises(TypeError, match="sample_batch"):
        train(small_model("cpu"), lambda n, g: [1, 2, 3], steps=1, progress=False)


def test_train_toy_is_reproducible_and_records_its_settings():
    first, second = (train_toy("circles", steps=5, batch_size=16, hidden=16, progress=False) for _ in range(2))
    assert torch.equal(first.ema_model.net[0].weight, second.ema_model.net[0].weight)
    assert first.settings["data"] == "circles" and first.settings["seed"] == 0
    assert first.settings["device"] == "cpu" and first.ema_model.config["hidden"] == 16


def moons_quality(model: torch.nn.Module, n: int = 5000) -> tuple[float, float]:
    """(sliced W2 of model samples to data, the data-vs-data floor), Heun with 50 steps."""
    return tuple(pretrained.evaluate_toy(model, "moons", n=n)[key] for key in ("sliced_w2", "sliced_w2_floor"))


def test_shipped_moons_checkpoint_is_near_the_floor():
    """Measured at save time (3,000 steps, 14 s on one CPU thread): sliced W2 0.0235 against a
    data-vs-data floor of 0.0106 (5,000 points each), a ratio of 2.2."""
    assert "moons" in pretrained.available()
    model = pretrained.load("moons")
    assert not model.training and isinstance(model, MLP)
    record = pretrained.info("moons")
    assert record["data"] == "moons" and record["device"] == "cpu" and record["steps"] > 0
    value, floor = moons_quality(model)
    assert value == pytest.approx(record["metrics"]["sliced_w2"], rel=1e-3)
    assert floor == pytest.approx(record["metrics"]["sliced_w2_floor"], rel=1e-6)
    assert value < 2.5 * floor, (value, floor)


def test_pretrained_names_are_checked(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="available"):
        pretrained.load("no-such-model")
    monkeypatch.setenv("FLOWLAB_DATA", str(tmp_path))
    assert pretrained.checkpoint_dir() == tmp_path / "checkpoints" and pretrained.available() == []


@pytest.mark.slow
def test_training_moons_from_scratch_approaches_the_floor():
    """Measured with train_toy's defaults (one CPU thread): 500 steps 7.4x the floor (1.7 s),
    1,000 steps 2.9x (3 s), 3,000 steps 2.2x (9 s); an untrained model is 53x."""
    result = train_toy("moons", steps=1000, progress=False)
    value, floor = moons_quality(result.ema_model)
    assert value < 4 * floor, (value, floor)


def test_sgd_step_moves_against_the_gradient_of_the_loss_it_returns():
    """One step: the returned loss is the loss before the step, on the generator's draws; each
    parameter moves by -lr times the gradient of exactly that loss."""
    model, copy_ = small_model("cpu"), small_model("cpu")
    x1 = toy.sample("moons", 64, generator=generator(1))
    loss = flow_matching_loss(copy_, x1, generator=generator(2))
    gradients = torch.autograd.grad(loss, list(copy_.parameters()))
    returned = sgd_step(model, x1, 0.1, generator(2))
    assert isinstance(returned, float) and returned == pytest.approx(loss.item(), rel=1e-6)
    for moved, start, gradient in zip(model.parameters(), copy_.parameters(), gradients):
        torch.testing.assert_close(moved.detach(), start.detach() - 0.1 * gradient, rtol=1e-5, atol=1e-7)


def test_sgd_steps_lower_the_loss_on_a_fixed_batch():
    model = small_model("cpu")
    x1 = toy.sample("moons", 128, generator=generator(3))
    losses = [sgd_step(model, x1, 0.05, generator(4)) for _ in range(20)]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("lr", [0.0, -0.1, True, "0.1"])
def test_sgd_step_rejects_a_bad_learning_rate(lr):
    with pytest.raises(ValueError, match="lr"):
        sgd_step(small_model("cpu"), torch.zeros(4, 2), lr)


def test_cfg_loss_drops_labels_then_draws_x0_then_t_in_float32():
    model = MLP(hidden=8, depth=1, num_classes=3)
    x1, y = torch.randn(32, 2, generator=generator(5)), torch.randint(0, 3, (32,), generator=generator(6))
    replay = generator(7)
    dropped = label_dropout(y, 0.5, 3, replay)
    x0, t = torch.randn(x1.shape, generator=replay), torch.rand(32, generator=replay)
    expected = flow_matching_loss(model, x1, x0=x0, t=t, y=dropped)
    torch.testing.assert_close(cfg_loss(model, x1, y, 0.5, 3, generator(7)), expected)
    in_float64 = cfg_loss(model.double(), x1.double(), y, 0.5, 3, generator(7))
    torch.testing.assert_close(in_float64.float(), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="generator"):
        cfg_loss(model, x1, y, 0.5, 3, 7)
