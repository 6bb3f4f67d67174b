"""MNIST-sized networks: the UNet velocity net, the classifiers and the image-conditioned UNet.

Shapes and dtypes, the null label / null condition, batch independence (GroupNorm), a few training
steps that lower the loss, classifier input gradients for guidance, parameter budgets, the
condition helpers and the checkpoint round trip.
"""
import json

import pytest
import torch
from torch.nn import functional as F

from flowlab import checkpoints
from flowlab import models as models_package
from flowlab.guidance import log_prob_grad_from_classifier
from flowlab.models.classifier import CleanClassifier, EvalClassifier, NoisyClassifier
from flowlab.models.conditioned import (ImageConditionedUNet, condition_mask, guided_velocity,
                                        low_resolution_condition, top_half_condition)
from flowlab.models.unet import UNet
from flowlab.train import flow_matching_loss

SMALL_UNET = {"channels": (8, 16, 16), "time_embedding_dim": 16}
SMALL_CLASSIFIER = {"channels": (8, 16, 16)}
SMALL = {
    "unet": lambda: UNet(**SMALL_UNET),
    "noisy": lambda: NoisyClassifier(time_embedding_dim=16, **SMALL_CLASSIFIER),
    "clean": lambda: CleanClassifier(**SMALL_CLASSIFIER),
    "eval": lambda: EvalClassifier(feature_dim=32, **SMALL_CLASSIFIER),
    "conditioned": lambda: ImageConditionedUNet(**SMALL_UNET),
}
DEFAULT = {"unet": UNet, "noisy": NoisyClassifier, "clean": CleanClassifier, "eval": EvalClassifier,
           "conditioned": ImageConditionedUNet}


def build(kind: str, device, default: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    return (DEFAULT[kind]() if default else SMALL[kind]()).to(device)


def call(kind: str, model, x: torch.Tensor, t=0.5, y=None, cond=None) -> torch.Tensor:
    """One forward pass with the arguments each kind of model takes."""
    if kind == "unet":
        return model(x, t, y)
    if kind == "noisy":
        return model(x, t)
    if kind == "clean":
        return model(x, t)
    if kind == "eval":
        return model(x)
    return model(x, t, cond)


def synthetic_digits(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x1, y)``: class k is a fixed random +-1 pattern of 4x4 blocks (7x7 of them) plus a little noise."""
    templates = torch.sign(torch.randn(10, 1, 7, 7, generator=torch.Generator().manual_seed(99)))
    templates = F.interpolate(templates, scale_factor=4, mode="nearest")
    labels = torch.randint(0, 10, (n,), generator=generator)
    return templates[labels] + 0.05 * torch.randn(n, 1, 28, 28, generator=generator), labels


@pytest.mark.parametrize("kind", list(SMALL))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_output_shape_and_dtype(device, kind, dtype):
    model = build(kind, device).to(dtype)
    x = torch.randn(3, 1, 28, 28, device=device, dtype=dtype)
    output = call(kind, model, x, t=torch.rand(3, device=device, dtype=dtype),
                  y=torch.tensor([0, 4, 10], device=device), cond=top_half_condition(x))
    expected = {"unet": (3, 1, 28, 28), "conditioned": (3, 1, 28, 28)}.get(kind, (3, 10))
    assert output.shape == expected and output.dtype == dtype and output.device.type == device.type
    assert torch.isfinite(output).all()


def test_eval_classifier_features(device):
    model = build("eval", device, default=True).eval()
    x = torch.randn(4, 1, 28, 28, device=device)
    features = model.features(x)
    assert features.shape == (4, 128)
    torch.testing.assert_close(model(x), model.logits(features))


@pytest.mark.parametrize("time_kind", ["float", "0-d", "batch"])
def test_unet_time_forms_agree_and_time_matters(device, time_kind):
    model = build("unet", device).eval()
    x = torch.randn(2, 1, 28, 28, device=device)
    t = {"float": 0.3, "0-d": torch.tensor(0.3), "batch": torch.full((2,), 0.3)}[time_kind]
    torch.testing.assert_close(model(x, t, 1), model(x, torch.full((2,), 0.3, device=device), 1))
    assert not torch.allclose(model(x, 0.3, 1), model(x, 0.7, 1))


def test_null_label_and_labels_change_the_output(device):
    model = build("unet", device, default=True).eval()
    assert model.null_label == 10 and model.conditioning.label_embedding.num_embeddings == 11
    x = torch.randn(11, 1, 28, 28, device=device)
    null = torch.full((11,), 10, device=device)
    reference = model(x, 0.4, null)
    torch.testing.assert_close(model(x, 0.4), reference)                    # y=None is the null label
    torch.testing.assert_close(model(x, 0.4, 10), reference)
    mixed = torch.tensor([10, 3, 10, 7, 10, 0, 1, 2, 4, 5, 10], device=device)
    out_mixed = model(x, 0.4, mixed)
    is_null = mixed == 10
    torch.testing.assert_close(out_mixed[is_null], reference[is_null], atol=1e-5, rtol=1e-5)
    same_x = x[:1].expand(11, -1, -1, -1)
    per_label = model(same_x, 0.4, torch.arange(11, device=device))
    differences = (per_label[:, None] - per_label[None, :]).flatten(2).abs().amax(2)
    off_diagonal = differences[~torch.eye(11, dtype=torch.bool, device=device)]
    assert off_diagonal.min() > 1e-4                                         # every label, null included, differs


@pytest.mark.parametrize("kind", list(DEFAULT))
def test_a_sample_does_not_depend_on_its_batch(device, kind):
    """In float64, so that a GPU's TF32 convolutions (whose rounding depends on the batch's algorithm)
    do not hide or fake a coupling between samples."""
    model = build(kind, device, default=True).eval().double()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(8, 1, 28, 28, generator=generator, dtype=torch.float64).to(device)
    t = torch.rand(8, generator=generator, dtype=torch.float64).to(device)
    y = torch.randint(0, 11, (8,), generator=generator).to(device)
    cond = top_half_condition(torch.randn(8, 1, 28, 28, generator=generator, dtype=torch.float64)).to(device)
    with torch.no_grad():
        alone = call(kind, model, x[:1], t[:1], y[:1], cond[:1])
        batched = call(kind, model, x, t, y, cond)
    torch.testing.assert_close(batched[:1], alone, atol=1e-5, rtol=1e-5)


def test_dropout_acts_in_training_mode_only():
    torch.manual_seed(0)
    model = UNet(dropout=0.3, **SMALL_UNET)
    x = torch.randn(2, 1, 28, 28)
    assert not torch.allclose(model.train()(x, 0.5, 1), model(x, 0.5, 1))
    model.eval()
    torch.testing.assert_close(model(x, 0.5, 1), model(x, 0.5, 1))


def fixed_loss(model, kind: str, x1, y, generator_seed: int = 123) -> float:
    """Flow-matching loss on fixed noise and times, so that before/after compare the same thing."""
    generator = torch.Generator().manual_seed(generator_seed)
    x0 = torch.randn(x1.shape, generator=generator).to(x1.device)
    t = torch.rand(x1.shape[0], generator=generator).to(x1.device)
    with torch.no_grad():
        if kind == "unet":
            return flow_matching_loss(model, x1, x0=x0, t=t, y=y).item()
        conditioned = lambda x, time: model(x, time, top_half_condition(x1))   # noqa: E731
        return flow_matching_loss(conditioned, x1, x0=x0, t=t).item()


@pytest.mark.parametrize("kind", ["unet", "conditioned"])
def test_twenty_flow_matching_steps_lower_the_loss(device, kind):
    model = build(kind, device)
    x1, y = synthetic_digits(32, torch.Generator().manual_seed(0))
    x1, y = x1.to(device), y.to(device)
    before = fixed_loss(model, kind, x1, y)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(5)
    for _ in range(20):
        if kind == "unet":
            loss = flow_matching_loss(model, x1, y=y, generator=generator)
        else:
            mask = condition_mask(32, 0.2, generator=generator, device=device)
            loss = flow_matching_loss(lambda x, t: model(x, t, top_half_condition(x1), cond_mask=mask),
                                      x1, generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert fixed_loss(model, kind, x1, y) < 0.7 * before          # measured: about 0.45


@pytest.mark.parametrize("kind", ["noisy", "clean", "eval"])
def test_twenty_classifier_steps_lower_the_cross_entropy(device, kind):
    model = build(kind, device)
    generator = torch.Generator().manual_seed(0)
    x1, y = synthetic_digits(64, generator)
    t = torch.rand(64, generator=generator) * 0.5 + 0.5
    x = (1 - t[:, None, None, None]) * torch.randn(x1.shape, generator=generator) + t[:, None, None, None] * x1
    if kind != "noisy":
        x = x1
    x, y, t = x.to(device), y.to(device), t.to(device)
    before = F.cross_entropy(call(kind, model, x, t), y).item()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(20):
        loss = F.cross_entropy(call(kind, model, x, t), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert F.cross_entropy(call(kind, model, x, t), y).item() < 0.9 * before     # steadily, from ln 10


@pytest.mark.parametrize("kind", ["noisy", "clean"])
def test_classifier_input_gradient_for_guidance(device, kind):
    model = build(kind, device, default=True).eval()
    x = torch.randn(4, 1, 28, 28, device=device)
    t = torch.full((4,), 0.6, device=device)
    y = torch.tensor([0, 1, 2, 3], device=device)
    with torch.no_grad():                                     # the helper must enable gradients itself
        grad = log_prob_grad_from_classifier(model, y)(x, t)
    assert grad.shape == x.shape and torch.isfinite(grad).all() and grad.abs().amax() > 0
    x_one = x[1:2].clone().requires_grad_(True)
    log_prob = torch.log_softmax(model(x_one, t[1:2]), dim=1)[0, 1]
    (expected,) = torch.autograd.grad(log_prob, x_one)
    torch.testing.assert_close(grad[1:2], expected, atol=1e-5, rtol=1e-4)   # per sample: no batch mixing


def test_noisy_classifier_depends_on_time_and_clean_ignores_it(device):
    noisy, clean = build("noisy", device), build("clean", device)
    x = torch.randn(2, 1, 28, 28, device=device)
    assert not torch.allclose(noisy(x, 0.2), noisy(x, 0.9))
    torch.testing.assert_close(clean(x, 0.2), clean(x))


@pytest.mark.parametrize("kind, low, high", [("unet", 300_000, 1_500_000), ("conditioned", 300_000, 1_500_000),
                                             ("noisy", 50_000, 200_000), ("clean", 50_000, 200_000),
                                             ("eval", 50_000, 200_000)])
def test_parameter_budget(kind, low, high):
    count = sum(p.numel() for p in DEFAULT[kind]().parameters())
    assert low <= count <= high, count


def test_all_default_checkpoints_fit_the_size_budget():
    total = sum(p.numel() for kind in DEFAULT for p in DEFAULT[kind]().parameters())
    assert 4 * total < 10 * 2**20                                  # float32 bytes, well under 20 MB


def test_top_half_condition_keeps_rows_0_to_13():
    x = torch.randn(2, 1, 28, 28)
    condition = top_half_condition(x)
    torch.testing.assert_close(condition[..., :14, :], x[..., :14, :])
    assert (condition[..., 14:, :] == 0).all()
    assert not (x[..., 14:, :] == 0).all()                         # the input is not modified


@pytest.mark.parametrize("factor", [2, 4, 7])
def test_low_resolution_condition_is_the_block_mean(factor):
    x = torch.arange(2 * 28 * 28, dtype=torch.float64).reshape(2, 1, 28, 28)
    condition = low_resolution_condition(x, factor)
    assert condition.shape == x.shape
    blocks = x.reshape(2, 1, 28 // factor, factor, 28 // factor, factor)
    means = blocks.mean(dim=(3, 5))
    expected = means.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)
    torch.testing.assert_close(condition, expected)
    # arange: the mean of a block is its centre value, e.g. the first block for factor 2 is mean(0, 1, 28, 29)
    assert float(condition[0, 0, 0, 0]) == pytest.approx((factor - 1) / 2 * 29)


def test_condition_mask_rate_and_seeding():
    mask = condition_mask(20_000, 0.25, generator=torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and abs((~mask).float().mean().item() - 0.25) < 0.015
    torch.testing.assert_close(mask, condition_mask(20_000, 0.25, generator=torch.Generator().manual_seed(0)))
    assert condition_mask(5, 0.0).all() and not condition_mask(5, 1.0).any()


def test_null_condition_ignores_the_condition_and_differs_from_a_blank_one(device):
    model = build("conditioned", device, default=True).eval()
    x = torch.randn(4, 1, 28, 28, device=device)
    cond = top_half_condition(torch.randn(4, 1, 28, 28, device=device))
    null = model(x, 0.5)
    all_dropped = torch.zeros(4, dtype=torch.bool, device=device)
    torch.testing.assert_close(model(x, 0.5, cond, cond_mask=all_dropped), null)
    torch.testing.assert_close(model(x, 0.5, 5 * cond, cond_mask=all_dropped), null)
    assert not torch.allclose(model(x, 0.5, cond), null, atol=1e-4)
    assert not torch.allclose(model(x, 0.5, torch.zeros_like(x)), null, atol=1e-4)   # the flag channel
    assert not torch.allclose(model(x, 0.5, cond), model(x, 0.5, 2 * cond), atol=1e-4)
    some = torch.tensor([True, False, True, False], device=device)
    mixed = model(x, 0.5, cond, cond_mask=some)
    torch.testing.assert_close(mixed[~some], null[~some], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed[some], model(x, 0.5, cond)[some], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("w, calls", [(0.0, 1), (1.0, 1), (2.5, 2)])
def test_guided_velocity_mixes_the_branches(device, w, calls):
    model = build("conditioned", device).eval()
    x = torch.randn(3, 1, 28, 28, device=device)
    cond = low_resolution_condition(torch.randn(3, 1, 28, 28, device=device))
    counted = []
    model.register_forward_hook(lambda *args: counted.append(1))
    t = torch.full((3,), 0.4, device=device)
    guided = guided_velocity(model, cond, w)(x, t)
    assert len(counted) == calls
    conditional, unconditional = model(x, t, cond), model(x, t)
    torch.testing.assert_close(guided, unconditional + w * (conditional - unconditional))


@pytest.mark.parametrize("kind", list(DEFAULT))
def test_checkpoint_round_trip(device, kind, tmp_path, monkeypatch):
    model = build(kind, device, default=True).eval()
    cls = type(model)
    assert cls(**json.loads(json.dumps(model.config))).config == model.config   # JSON-safe and rebuildable
    # Register the class with flowlab.models for this test if flowlab.models does not export it yet.
    if cls.__name__ not in checkpoints.model_registry():
        monkeypatch.setattr(models_package, cls.__name__, cls, raising=False)
        monkeypatch.setattr(models_package, "__all__", [*models_package.__all__, cls.__name__])
    checkpoints.save(tmp_path / "model", model, {"steps": 0})
    loaded, meta = checkpoints.load(tmp_path / "model", map_location=device)
    assert type(loaded) is cls and loaded.config == model.config and meta == {"steps": 0}
    x = torch.randn(2, 1, 28, 28, device=device)
    y = torch.tensor([3, 10], device=device)
    torch.testing.assert_close(call(kind, loaded.eval(), x, 0.3, y, x), call(kind, model, x, 0.3, y, x))


@pytest.mark.parametrize("make, error, match", [
    (lambda: UNet(channels=()), ValueError, "channels"),
    (lambda: UNet(channels=(16, 0)), ValueError, r"channels\[1\]"),
    (lambda: UNet(num_classes=0), ValueError, "num_classes"),
    (lambda: UNet(dropout=1.0), ValueError, "dropout"),
    (lambda: UNet(in_channels=2.0), ValueError, "in_channels"),
    (lambda: NoisyClassifier(time_embedding_dim=0), ValueError, "time_embedding_dim"),
    (lambda: EvalClassifier(feature_dim=-1), ValueError, "feature_dim"),
    (lambda: CleanClassifier(channels="16"), ValueError, "channels"),
])
def test_bad_constructor_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("kind, call_bad, error, match", [
    ("unet", lambda m: m(torch.randn(2, 2, 28, 28), 0.5), ValueError, r"x must have shape \(B, 1"),
    ("unet", lambda m: m(torch.randn(2, 1, 30, 30), 0.5), ValueError, "divisible by 4"),
    ("unet", lambda m: m(torch.randn(2, 28, 28), 0.5), ValueError, "x must have shape"),
    ("unet", lambda m: m(torch.randn(2, 1, 28, 28), 1.5), ValueError, r"\[0, 1\]"),
    ("unet", lambda m: m(torch.randn(2, 1, 28, 28), 0.5, torch.tensor([0, 11])), ValueError, "null label"),
    ("unet", lambda m: m(torch.randn(2, 1, 28, 28), 0.5, torch.zeros(2)), TypeError, "integer"),
    ("noisy", lambda m: m(torch.randn(2, 1, 28, 28), torch.rand(3)), ValueError, "t must"),
    ("clean", lambda m: m(torch.zeros(2, 1, 28, 28, dtype=torch.long)), TypeError, "floating"),
    ("conditioned", lambda m: m(torch.randn(2, 1, 28, 28), 0.5, torch.randn(2, 1, 14, 28)), ValueError,
     "cond must be an image shaped like x"),
    ("conditioned", lambda m: m(torch.randn(2, 1, 28, 28), 0.5, torch.randn(2, 1, 28, 28),
                                cond_mask=torch.ones(2)), ValueError, "cond_mask must be a bool"),
])
def test_bad_forward_input_is_named(kind, call_bad, error, match):
    with pytest.raises(error, match=match):
        call_bad(SMALL[kind]())


@pytest.mark.parametrize("call_bad, error, match", [
    (lambda: top_half_condition(torch.randn(28, 28)), ValueError, "x must have shape"),
    (lambda: low_resolution_condition(torch.randn(1, 1, 28, 28), 3), ValueError, "divisible by factor=3"),
    (lambda: low_resolution_condition(torch.randn(1, 1, 28, 28), 0), ValueError, "factor"),
    (lambda: condition_mask(4, 1.5), ValueError, "p_drop"),
    (lambda: guided_velocity(SMALL["conditioned"](), torch.zeros(1, 1, 28, 28), "2"), TypeError, "w must"),
])
def test_bad_helper_input_is_named(call_bad, error, match):
    with pytest.raises(error, match=match):
        call_bad()
