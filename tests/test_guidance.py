"""Guidance on exact Gaussian mixtures, where the class-conditional velocity is known in closed form.

A mixture's component k is a "class": the conditional velocity is that of component k alone, the
unconditional one that of the whole mixture, and log p(k | x_t) is the log-responsibility. Then
v_k = v + (1 - t)/t grad log p(k | x_t) exactly, which both guidance methods must reproduce.
"""
import pytest
import torch

from flowlab import paths
from flowlab.data import GaussianMixture
from flowlab.guidance import (cfg, cfg_velocity, classifier_free_guidance, classifier_guidance, guided_velocity, sample_cfg,
                              log_prob_grad_from_classifier)
from flowlab.guidance import log_prob_grad_through_x1_hat
from flowlab.schedules import uniform
from flowlab.solvers import integrate

RING = GaussianMixture.ring()
UNEVEN = GaussianMixture([[-3.0, 0.0], [2.0, 1.0], [0.5, -2.5]], std=torch.tensor([0.3, 0.8, 0.5]),
                         weights=[0.5, 0.3, 0.2])
MIXTURES = {"ring": RING, "uneven": UNEVEN}


def _component(gmm: GaussianMixture, k: int) -> GaussianMixture:
    return GaussianMixture(gmm.means[k:k + 1], gmm.std[k:k + 1])


class MixtureClassModel:
    """``model(x, t, y=labels)``: component ``y`` of the mixture, the whole mixture for the null label.

    Counts its calls, like a network would cost them.
    """

    def __init__(self, gmm: GaussianMixture):
        self.gmm, self.n_classes, self.calls = gmm, gmm.means.shape[0], 0
        self.null_label = self.n_classes
        self.components = [_component(gmm, k) for k in range(self.n_classes)]

    def __call__(self, x, t, y):
        self.calls += 1
        options = [c.velocity(x, t) for c in self.components] + [self.gmm.velocity(x, t)]
        return torch.stack(options)[y, torch.arange(x.shape[0], device=x.device)]


def log_class_joint(gmm: GaussianMixture):
    """Exact "classifier" logits: log w_k + log N(x; t mu_k, sigma_k(t)^2 I); softmax = responsibilities."""
    def classifier(x, t):
        columns = [_component(gmm, k).log_prob(x, t) + gmm.weights[k].log().to(x)
                   for k in range(gmm.means.shape[0])]
        return torch.stack(columns, dim=1)
    return classifier


def _batch(device, n=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = (3 * torch.randn(n, 2, generator=generator, dtype=torch.float64)).to(device)
    t = (0.05 + 0.9 * torch.rand(n, generator=generator, dtype=torch.float64)).to(device)
    return x, t


CONVERSIONS = {
    "velocity": (lambda v, x, t: v, lambda q, x, t: q),
    "x1_hat": (paths.x1_from_velocity, paths.velocity_from_x1),
    "x0_hat": (paths.x0_from_velocity, paths.velocity_from_x0),
    "score": (paths.score_from_velocity, paths.velocity_from_score),
}


@pytest.mark.parametrize("space", sorted(CONVERSIONS))
@pytest.mark.parametrize("w", [0.0, 1.0, 3.5, -0.5])
def test_cfg_is_the_same_in_every_parametrisation(space, w, device):
    to_space, from_space = CONVERSIONS[space]
    x, t = _batch(device)
    v_cond, v_uncond = RING.velocity(x, t), UNEVEN.velocity(x, t)
    mixed = cfg_velocity(to_space(v_cond, x, t), to_space(v_uncond, x, t), w)
    torch.testing.assert_close(from_space(mixed, x, t), cfg_velocity(v_cond, v_uncond, w))


def test_cfg_formula_weight_one_is_conditional_and_zero_unconditional(device):
    x, t = _batch(device)
    v_cond, v_uncond = RING.velocity(x, t), UNEVEN.velocity(x, t)
    assert torch.equal(cfg_velocity(v_cond, v_uncond, 1.0), v_cond)
    assert torch.equal(cfg_velocity(v_cond, v_uncond, 0.0), v_uncond)
    torch.testing.assert_close(cfg_velocity(v_cond, v_uncond, 3.0), v_uncond + 3.0 * (v_cond - v_uncond))


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0, -0.5])
def test_cfg_of_two_velocities_mixes_them_and_calls_one_branch_at_w_zero_or_one(w, device):
    x, t = _batch(device)
    v_cond, v_uncond = RING.velocity, UNEVEN.velocity      # bound once: each attribute access is a new object
    guided = cfg(v_cond, v_uncond, w)
    torch.testing.assert_close(guided(x, t), cfg_velocity(v_cond(x, t), v_uncond(x, t), w))
    assert (guided is v_cond) == (w == 1.0) and (guided is v_uncond) == (w == 0.0)


@pytest.mark.parametrize("w, calls_per_evaluation", [(0.0, 1), (1.0, 1), (2.5, 2)])
def test_cfg_model_calls_are_counted(w, calls_per_evaluation, device):
    model = MixtureClassModel(RING)
    y = torch.arange(16, device=device) % model.n_classes
    guided = classifier_free_guidance(model, y, w)
    x = torch.randn(16, 2, dtype=torch.float64, device=device)
    integrate(guided, x, uniform(5), "heun")
    assert model.calls == calls_per_evaluation * 2 * 5


@pytest.mark.parametrize("name", sorted(MIXTURES))
@pytest.mark.parametrize("w", [0.0, 1.0, 2.5])
def test_classifier_free_guidance_on_the_exact_class_model(name, w, device):
    gmm = MIXTURES[name]
    model = MixtureClassModel(gmm)
    x, t = _batch(device)
    y = torch.arange(x.shape[0], device=device) % model.n_classes
    null = torch.full_like(y, model.null_label)
    expected = cfg_velocity(model(x, t, y=y), model(x, t, y=null), w)
    torch.testing.assert_close(classifier_free_guidance(model, y, w)(x, t), expected)
    if w == 1.0:
        per_class = torch.stack([_component(gmm, int(k)).velocity(x[i:i + 1], t[i:i + 1])[0]
                                 for i, k in enumerate(y)])
        torch.testing.assert_close(classifier_free_guidance(model, y, w)(x, t), per_class)


@pytest.mark.parametrize("name", sorted(MIXTURES))
@pytest.mark.parametrize("t_value", [0.02, 0.3, 0.7, 1.0])
def test_classifier_guidance_with_the_exact_classifier_gives_the_class_velocity(name, t_value, device):
    gmm = MIXTURES[name]
    x, _ = _batch(device)
    t = torch.full((x.shape[0],), t_value, dtype=x.dtype, device=device)
    n_classes = gmm.means.shape[0]
    y = torch.arange(x.shape[0], device=device) % n_classes
    grad = log_prob_grad_from_classifier(log_class_joint(gmm), y)
    guided = classifier_guidance(gmm.velocity, grad, w=1.0, t_min=1e-3)(x, t)
    for k in range(n_classes):
        rows = y == k
        torch.testing.assert_close(guided[rows], _component(gmm, k).velocity(x[rows], t[rows]))


@pytest.mark.parametrize("w", [0.5, 3.0])
def test_classifier_guidance_equals_cfg_for_exact_models(w, device):
    """For exact models v_cond - v_uncond = (1 - t)/t grad log p(y | x_t), so both guidances agree."""
    model = MixtureClassModel(UNEVEN)
    x, t = _batch(device)
    y = torch.arange(x.shape[0], device=device) % model.n_classes
    grad = log_prob_grad_from_classifier(log_class_joint(UNEVEN), y)
    torch.testing.assert_close(classifier_guidance(UNEVEN.velocity, grad, w, t_min=1e-3)(x, t),
                               classifier_free_guidance(model, y, w)(x, t))


def test_classifier_guidance_leaves_times_below_t_min_unchanged(device):
    x, _ = _batch(device, n=8)
    t = torch.tensor([0.0, 0.05, 0.099, 0.1, 0.2, 0.5, 0.9, 1.0], dtype=x.dtype, device=device)
    y = torch.zeros(8, dtype=torch.int64, device=device)
    grad = log_prob_grad_from_classifier(log_class_joint(RING), y)
    guided = classifier_guidance(RING.velocity, grad, w=2.0, t_min=0.1)(x, t)
    plain = RING.velocity(x, t)
    assert torch.equal(guided[:3], plain[:3])
    assert torch.isfinite(guided).all()
    assert not torch.allclose(guided[3:6], plain[3:6])


def test_classifier_is_not_called_when_every_time_is_below_t_min():
    def exploding_grad(x, t):
        raise AssertionError("the classifier must not run below t_min")
    x = torch.randn(4, 2, dtype=torch.float64)
    guided = classifier_guidance(RING.velocity, exploding_grad, w=2.0, t_min=0.5)
    assert torch.equal(guided(x, torch.full((4,), 0.2, dtype=torch.float64)), RING.velocity(x, 0.2))


def test_log_prob_grad_matches_finite_differences_and_works_under_no_grad():
    x, t = _batch("cpu", n=4)
    y = torch.tensor([0, 1, 2, 1])
    classifier = log_class_joint(UNEVEN)
    with torch.no_grad():
        grad = log_prob_grad_from_classifier(classifier, y)(x, t)
    assert not grad.requires_grad
    step = 1e-6
    for d in range(2):
        shift = torch.zeros_like(x)
        shift[:, d] = step
        up = torch.log_softmax(classifier(x + shift, t), 1).gather(1, y[:, None])[:, 0]
        down = torch.log_softmax(classifier(x - shift, t), 1).gather(1, y[:, None])[:, 0]
        torch.testing.assert_close(grad[:, d], (up - down) / (2 * step), rtol=1e-5, atol=1e-6)


def test_null_label_is_read_from_the_model_or_required():
    y = torch.zeros(4, dtype=torch.int64)
    model = MixtureClassModel(RING)
    x = torch.randn(4, 2, dtype=torch.float64)
    torch.testing.assert_close(classifier_free_guidance(model, y, 0.0)(x, 0.5), RING.velocity(x, 0.5))
    with pytest.raises(ValueError, match="null_label"):
        classifier_free_guidance(lambda x, t, y: x, y, 2.0)


@pytest.mark.parametrize("call, error, message", [
    (lambda: cfg_velocity(torch.zeros(4, 2), torch.zeros(4, 3), 2.0), ValueError, "shapes"),
    (lambda: cfg_velocity(torch.zeros(4, 2), torch.zeros(4, 2), float("nan")), TypeError, "w"),
    (lambda: cfg(RING.velocity, torch.zeros(4, 2), 2.0), TypeError, "v_uncond"),
    (lambda: cfg(RING.velocity, UNEVEN.velocity, "2"), TypeError, "w must"),
    (lambda: classifier_free_guidance(MixtureClassModel(RING), torch.zeros(4), 2.0), TypeError, "int64"),
    (lambda: classifier_free_guidance(MixtureClassModel(RING), torch.zeros(4, dtype=torch.int64), 2.0,
                                      null_label=1.5), TypeError, "null_label"),
    (lambda: classifier_free_guidance(MixtureClassModel(RING), torch.zeros(3, dtype=torch.int64), 2.0)(
        torch.zeros(4, 2, dtype=torch.float64), torch.full((4,), 0.5, dtype=torch.float64)), ValueError, "y"),
    (lambda: classifier_guidance(RING.velocity, lambda x, t: x, 1.0, t_min=0.0), ValueError, "t_min"),
    (lambda: classifier_guidance(RING.velocity, lambda x, t: x, 1.0, t_min=1.5), ValueError, "t_min"),
    (lambda: log_prob_grad_from_classifier(log_class_joint(RING), torch.zeros(4)), TypeError, "int64"),
])
def test_bad_input_raises_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_guided_velocity_is_cfg_from_one_call_on_a_doubled_batch(device):
    x, t = _batch(device, n=16)
    y = torch.arange(16, device=device) % RING.means.shape[0]
    model = MixtureClassModel(RING)
    sizes = []
    counting = lambda x, t, y: sizes.append(x.shape[0]) or model(x, t, y)
    got = guided_velocity(counting, x, t, y, 2.5, model.null_label)
    torch.testing.assert_close(got, classifier_free_guidance(model, y, 2.5)(x, t))
    assert sizes == [32]


def test_sample_cfg_is_euler_on_the_guided_velocity(device):
    x0, _ = _batch(device, n=16)
    y = torch.zeros(16, dtype=torch.int64, device=device)
    model = MixtureClassModel(RING)
    expected = integrate(classifier_free_guidance(model, y, 3.0), x0, uniform(10), "euler")
    torch.testing.assert_close(sample_cfg(model, x0, y, 3.0, 10, model.null_label), expected)


@pytest.mark.parametrize("call, error, message", [
    (lambda: guided_velocity(MixtureClassModel(RING), torch.zeros(4, 2), torch.zeros(3), torch.zeros(4, dtype=torch.int64),
                             2.0, 8), ValueError, "t must"),
    (lambda: guided_velocity(MixtureClassModel(RING), torch.zeros(4, 2), torch.zeros(4), torch.zeros(4, dtype=torch.int64),
                             2.0, 8.0), TypeError, "null_label"),
    (lambda: sample_cfg(MixtureClassModel(RING), torch.zeros(4, 2), torch.zeros(4, dtype=torch.int64), 2.0, 0, 8),
     ValueError, "steps"),
])
def test_guided_sampling_rejects_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def _clean_classifier(gmm: GaussianMixture):
    """The exact classifier of CLEAN points (the components at t = 1), whatever time it is given."""
    exact = log_class_joint(gmm)
    return lambda x, t: exact(x, 1.0)


def test_gradient_through_x1_hat_matches_finite_differences_of_the_composition_under_no_grad():
    x, t = _batch("cpu", n=6)
    y = torch.tensor([0, 1, 2, 1, 0, 2])
    classifier = _clean_classifier(UNEVEN)
    with torch.no_grad():
        grad = log_prob_grad_through_x1_hat(classifier, UNEVEN.velocity, y)(x, t)
    assert not grad.requires_grad and grad.shape == x.shape

    def log_prob(points):
        x1_hat = points + (1 - t)[:, None] * UNEVEN.velocity(points, t)
        return torch.log_softmax(classifier(x1_hat, 1.0), 1).gather(1, y[:, None])[:, 0]

    step = 1e-6
    for d in range(2):
        shift = torch.zeros_like(x)
        shift[:, d] = step
        torch.testing.assert_close(grad[:, d], (log_prob(x + shift) - log_prob(x - shift)) / (2 * step),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("velocity, t_value", [(lambda x, t: torch.zeros_like(x), 0.3), (RING.velocity, 1.0)])
def test_gradient_through_x1_hat_is_the_clean_gradient_at_x_when_x1_hat_is_x(velocity, t_value):
    """With a zero velocity, or at t = 1, x1_hat = x: the clean classifier's own gradient at x."""
    x, _ = _batch("cpu", n=8)
    y = torch.arange(8) % 8
    classifier = _clean_classifier(RING)
    through = log_prob_grad_through_x1_hat(classifier, velocity, y)(x, t_value)
    torch.testing.assert_close(through, log_prob_grad_from_classifier(classifier, y)(x, t_value))


def test_clean_classifier_guides_the_ring_through_x1_hat_but_not_on_x_t():
    """The clean ring classifier on x_t throws samples past the ring; read through x1_hat it steers them
    onto component 0. Its log-probabilities are steep (components of sd 0.3), so the weight is small:
    w = 0.1, t_min = 0.05, 20 Euler steps (measured: 100% and 36% of 200 samples within 1 of its mean)."""
    noise = torch.randn(200, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.zeros(200, dtype=torch.int64)
    classifier = _clean_classifier(RING)
    on_target = {}
    for name, gradient in [("x1_hat", log_prob_grad_through_x1_hat(classifier, RING.velocity, y)),
                           ("x_t", log_prob_grad_from_classifier(classifier, y))]:
        samples = integrate(classifier_guidance(RING.velocity, gradient, 0.1, 0.05), noise, uniform(20))
        on_target[name] = ((samples - RING.means[0]).norm(dim=1) < 1.0).double().mean().item()
    assert on_target["x1_hat"] > 0.9 > 0.5 > on_target["x_t"]


@pytest.mark.parametrize("call, error, message", [
    (lambda: log_prob_grad_through_x1_hat(log_class_joint(RING), RING.velocity, torch.zeros(4)), TypeError, "int64"),
    (lambda: log_prob_grad_through_x1_hat(log_class_joint(RING), None, torch.zeros(4, dtype=torch.int64)),
     TypeError, "velocity"),
    (lambda: log_prob_grad_through_x1_hat(log_class_joint(RING), RING.velocity, torch.zeros(3, dtype=torch.int64))(
        torch.zeros(4, 2, dtype=torch.float64), 0.5), ValueError, "y"),
])
def test_gradient_through_x1_hat_rejects_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()
