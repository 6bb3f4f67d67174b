"""Inversion, regeneration, class swap and SDEdit with a tiny untrained class-conditional UNet.

An untrained network is a perfectly good smooth velocity field: the round trip through it must
still close at the solver's order, and the editing functions must compose exactly as documented.
Images are 8x8 (the UNet only needs sides divisible by 2) and float64, so that the solver error,
not rounding, is what the tests see.
"""
import pytest
import torch

from flowlab.mnist.editing import (class_labels, class_swap, conditional_velocity, invert_digits,
                             reconstruction_error, regenerate, sdedit_class)
from flowlab.inversion import invert
from flowlab.models import UNet
from flowlab.schedules import uniform
from flowlab.solvers import integrate

BATCH = 4


def tiny_unet(device="cpu") -> UNet:
    torch.manual_seed(0)
    model = UNet(channels=(8, 16), num_classes=10, time_embedding_dim=16).double().eval()
    return model.to(device)


@pytest.fixture(scope="module")
def model():
    return tiny_unet()


def images(device="cpu", seed=1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(BATCH, 1, 8, 8, generator=generator, dtype=torch.float64) * 2 - 1).to(device)


LABELS = torch.tensor([0, 3, 7, 9])


class CountingModel(torch.nn.Module):
    """Counts the model's forward passes (one call = one pass over the batch)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.null_label, self.num_classes, self.passes = model, model.null_label, model.num_classes, 0

    def forward(self, x, t, y=None):
        self.passes += 1
        return self.model(x, t, y=y)


def test_the_velocity_is_not_trivial(model):
    x = images()
    v = model(x, torch.full((BATCH,), 0.5, dtype=torch.float64), y=LABELS)
    assert 0.05 < v.abs().mean() < 20
    assert not torch.allclose(v, model(x, 0.5, y=(LABELS + 1) % 10))   # the label matters


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_round_trip_error_falls_with_nfe(model, method):
    x1 = images()
    errors = [reconstruction_error(model, x1, LABELS, uniform(n), method)["mse"] for n in (4, 8, 16)]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors
    order = 1 if method == "euler" else 2
    # mse is squared: a first-order error falls 4x per doubling of the steps, a second-order one 16x
    # (measured: Euler 6.2e-3 -> 4.2e-4, Heun 8.1e-6 -> 4.2e-9 from 4 to 16 steps).
    assert errors[0] / errors[-1] > 0.5 * (2 ** (2 * order)) ** 2, errors


def test_round_trip_with_rk4_is_exact_to_high_precision(model, device):
    model = tiny_unet(device) if device.type != "cpu" else model
    x1 = images(device)
    result = reconstruction_error(model, x1, LABELS.to(device), uniform(64), "rk4")
    # 1.1e-5 measured: the fast sinusoidal time features (up to 1000 rad per unit t) limit RK4
    assert result["max_abs"] < 1e-4 and result["mse"] < 1e-9, result
    assert result["x0"].shape == x1.shape and result["x0"].device.type == device.type
    assert (result["x0"] - x1).abs().mean() > 0.1       # it did go somewhere


def test_invert_digits_is_the_unguided_conditional_ode_backwards(model):
    x1, ts = images(), uniform(5)
    expected = invert(lambda x, t: model(x, t, y=LABELS), x1, ts, "heun")
    torch.testing.assert_close(invert_digits(model, x1, LABELS, ts, "heun"), expected, rtol=0, atol=0)


def test_regenerate_uses_the_cfg_velocity(model):
    x0, ts, w = images(seed=2), uniform(4), 2.5

    def guided(x, t):
        unconditional = model(x, t, y=torch.full_like(LABELS, model.null_label))
        return unconditional + w * (model(x, t, y=LABELS) - unconditional)

    torch.testing.assert_close(regenerate(model, x0, LABELS, ts, "euler", w=w), integrate(guided, x0, ts, "euler"))


def test_class_swap_is_invert_then_regenerate_with_the_new_label(model):
    x1, ts, y_to = images(), uniform(6), torch.tensor([5, 5, 1, 2])
    expected = regenerate(model, invert_digits(model, x1, LABELS, ts, "heun"), y_to, ts, "heun", w=2.0)
    torch.testing.assert_close(class_swap(model, x1, LABELS, y_to, ts, "heun", w=2.0), expected, rtol=0, atol=0)


def test_class_swap_to_the_same_class_returns_the_input(model):
    x1 = images()
    same = class_swap(model, x1, LABELS, LABELS, uniform(64), "rk4")
    torch.testing.assert_close(same, x1, rtol=0, atol=1e-4)
    other = class_swap(model, x1, LABELS, (LABELS + 1) % 10, uniform(64), "rk4")
    assert (other - x1).abs().mean() > 1e-3


def test_an_int_label_is_broadcast(model):
    x1, ts = images(), uniform(3)
    torch.testing.assert_close(class_swap(model, x1, 4, 7, ts), class_swap(model, x1, torch.full((BATCH,), 4),
                                                                           torch.full((BATCH,), 7), ts))


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_sdedit_from_t0_zero_is_sampling_from_the_noise(model, method):
    x1, noise, ts, y_to = images(), images(seed=3), uniform(5), torch.tensor([1, 2, 3, 4])
    torch.testing.assert_close(sdedit_class(model, x1, y_to, 0.0, ts, noise, method, w=3.0),
                               regenerate(model, noise, y_to, ts, method, w=3.0), rtol=0, atol=1e-12)


def test_sdedit_keeps_more_of_the_input_as_t0_grows(model):
    x1, noise, ts = images(), images(seed=3), uniform(8)
    distances = [(sdedit_class(model, x1, 2, t0, ts, noise) - x1).pow(2).mean().item() for t0 in (0.0, 0.5, 0.9)]
    assert distances[0] > distances[1] > distances[2]
    assert torch.equal(sdedit_class(model, x1, 2, 1.0, ts, noise), x1)


def test_network_passes_per_evaluation():
    """Inversion never guides (1 pass per NFE); regeneration with w != 0, 1 costs 2 passes per NFE."""
    counted, x1, ts = CountingModel(tiny_unet()), images(), uniform(5)
    invert_digits(counted, x1, LABELS, ts, "heun")
    assert counted.passes == 10
    counted.passes = 0
    class_swap(counted, x1, LABELS, 3, ts, "euler", w=2.0)
    assert counted.passes == 5 + 2 * 5


def test_conditional_velocity_at_w_one_is_the_model(model):
    x, t = images(), torch.full((BATCH,), 0.3, dtype=torch.float64)
    torch.testing.assert_close(conditional_velocity(model, LABELS)(x, t), model(x, t, y=LABELS))


def test_cpu_and_device_give_the_same_edits(model, device):
    x1, noise, ts = images(), images(seed=3), uniform(6)
    on_device = tiny_unet(device)
    for run in (lambda m, a, b, y: class_swap(m, a, y, (y + 2) % 10, ts, "heun", w=2.0),
                lambda m, a, b, y: sdedit_class(m, a, y, 0.4, ts, b, "euler", w=2.0)):
        expected = run(model, x1, noise, LABELS)
        got = run(on_device, x1.to(device), noise.to(device), LABELS.to(device))
        torch.testing.assert_close(got.cpu(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("y, error, match", [
    (torch.tensor([0.0, 1.0, 2.0, 3.0]), TypeError, "integer class labels"),
    (torch.tensor([0, 1]), ValueError, r"shape \(B,\) = \(4,\)"),
    (torch.tensor([0, 1, 2, 10]), ValueError, r"0\.\.9"),
    (-1, ValueError, r"0\.\.9"),
    ("7", TypeError, "torch.Tensor"),
])
def test_bad_labels_are_named(model, y, error, match):
    with pytest.raises(error, match=match):
        class_swap(model, images(), LABELS, y, uniform(2))
    with pytest.raises(error, match="y_to"):
        class_swap(model, images(), LABELS, y, uniform(2))


def test_bad_inputs(model):
    x1 = images()
    with pytest.raises(ValueError, match="increasing"):
        invert_digits(model, x1, LABELS, uniform(4).flip(0))
    with pytest.raises(TypeError, match="x1"):
        invert_digits(model, x1.numpy(), LABELS, uniform(4))
    with pytest.raises(TypeError, match="floating"):
        regenerate(model, (x1 > 0).long(), LABELS, uniform(4))
    with pytest.raises(ValueError, match="noise"):
        sdedit_class(model, x1, 1, 0.5, uniform(4), x1[:2])
    with pytest.raises(ValueError, match="t0"):
        sdedit_class(model, x1, 1, 1.5, uniform(4), x1)
    with pytest.raises(TypeError, match="w must be"):
        class_swap(model, x1, LABELS, 1, uniform(4), w="strong")
    with pytest.raises(ValueError, match="method"):
        class_swap(model, x1, LABELS, 1, uniform(4), method="leapfrog")


def test_class_labels_returns_int64_on_the_image_device(model):
    y = class_labels("y", torch.tensor([1, 2, 3, 4], dtype=torch.int32), images(), model)
    assert y.dtype == torch.int64 and y.tolist() == [1, 2, 3, 4]
