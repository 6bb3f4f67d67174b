"""The MNIST benchmark's machinery, with tiny untrained models (the numbers themselves are the
shipped checkpoints' business: tests/test_pretrained_mnist.py)."""
import pytest
import torch

from flowlab import cli, models, pretrained, schedules
from flowlab.guidance import classifier_free_guidance
from flowlab.mnist import bench, evaluation, sampling
from flowlab.mnist.bench import BenchSizes, MnistModels
from flowlab.solvers import integrate

SMALL = (8, 16)


def tiny_models() -> MnistModels:
    torch.manual_seed(0)
    return MnistModels(cfg=models.UNet(channels=SMALL).eval(),
                       eval=models.EvalClassifier(channels=SMALL, feature_dim=16).eval(),
                       noisy=models.NoisyClassifier(channels=SMALL).eval(),
                       clean=models.CleanClassifier(channels=SMALL).eval())


@pytest.fixture(scope="module")
def tiny():
    return tiny_models()


@pytest.fixture(scope="module")
def quick_run(tiny):
    printed = []
    results = bench.run_bench(tiny, BenchSizes.quick(), seed=0, out=printed.append)
    return results, "\n".join(printed)


class Counting(torch.nn.Module):
    """Counts forward calls of the wrapped model (one call = one pass over the batch)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0
        self.null_label, self.num_classes = getattr(model, "null_label", None), getattr(model, "num_classes", None)

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.model(*args, **kwargs)


def test_every_table_is_printed(quick_run):
    _, text = quick_run
    for heading in ("(a) CFG sweep", "(b) CFG at w =", "(c) classifier guidance", "(d) inversion", "(e) 10 digits"):
        assert heading in text
    for column in ("accuracy", "diversity", "Frechet", "floor", "passes", "max |err|", "real test digits"):
        assert column in text


def test_rows_have_the_expected_keys(quick_run):
    results, _ = quick_run
    sizes = BenchSizes.quick()
    assert [row["w"] for row in results["sweep"]] == list(sizes.cfg_ws)
    assert set(results["sweep"][0]) >= {"w", "accuracy", "diversity", "frechet", "frechet_floor", "nfe", "passes"}
    assert {(r["method"], r["nfe"]) for r in results["solvers"]} == {("euler", 4), ("heun", 4)}
    assert set(results["solvers"][0]) >= {"accuracy", "frechet", "frechet_floor", "passes", "schedule", "steps"}
    assert [(r["classifier"], r["w"]) for r in results["classifier_guidance"]] == [("none", 0.0), ("noisy", 3.0),
                                                                                  ("clean", 3.0)]
    assert {(r["method"], r["nfe"]) for r in results["inversion"]} == {("euler", 2), ("euler", 4), ("heun", 2),
                                                                      ("heun", 4)}
    assert all(0 <= r["accuracy"] <= 1 for r in results["sweep"] + results["solvers"])
    assert results["w"] in sizes.cfg_ws and results["seconds"] > 0


def test_passes_count_two_per_nfe_only_for_real_guidance(quick_run):
    results, _ = quick_run
    for row in results["sweep"]:
        assert row["passes"] == row["nfe"] * (1 if row["w"] in (0.0, 1.0) else 2)


@pytest.mark.parametrize("w, passes", [(0.0, 4), (1.0, 4), (3.0, 8)])
def test_cfg_samples_cost_the_counted_passes(tiny, w, passes):
    counted = Counting(tiny.cfg)
    sampling.sample_digits(counted, torch.arange(3), w, 4, "euler", noise=sampling.digit_noise(3))
    assert counted.calls == passes == 4 * sampling.cfg_passes_per_nfe(w)


def test_cfg_samples_in_batches_are_one_integration_of_the_guided_velocity(tiny):
    labels = torch.tensor([1, 4, 7])
    noise = sampling.digit_noise(3, seed=5)
    ours = sampling.sample_digits(tiny.cfg, labels, 2.0, 3, "heun", noise=noise, batch_size=2)
    with torch.no_grad():
        whole = integrate(classifier_free_guidance(tiny.cfg, labels, 2.0), noise, schedules.uniform(3), "heun")
    torch.testing.assert_close(ours, whole.clamp(-1, 1))


def test_inversion_rows_skip_nfes_a_method_cannot_spend(tiny):
    images = sampling.digit_noise(2).clamp(-1, 1)
    rows = bench.inversion_rows(tiny.cfg, images, torch.tensor([3, 8]), ("heun",), (3, 4))
    assert [(r["nfe"], r["steps"]) for r in rows] == [(4, 2)]


@pytest.mark.parametrize("rows, best", [
    ([{"w": 1.0, "accuracy": 0.90, "frechet": 5.0}, {"w": 3.0, "accuracy": 0.985, "frechet": 8.0},
      {"w": 5.0, "accuracy": 0.99, "frechet": 12.0}], 3.0),
    ([{"w": 1.0, "accuracy": 0.90, "frechet": 5.0}, {"w": 3.0, "accuracy": 0.95, "frechet": 8.0}], 3.0),
    ([{"w": 2.0, "accuracy": 0.95, "frechet": 9.0}, {"w": 3.0, "accuracy": 0.95, "frechet": 8.0}], 3.0),
])
def test_best_guidance_weight(rows, best):
    assert bench.best_guidance_weight(rows) == best


def test_the_next_larger_weight_is_confirmed_too():
    rows = [{"w": w} for w in (0.0, 1.0, 1.5, 2.0)]
    assert bench.weights_to_confirm(rows, 1.0) == [1.0, 1.5]
    assert bench.weights_to_confirm(rows, 2.0) == [2.0]


def test_best_guidance_weight_needs_rows():
    with pytest.raises(ValueError, match="at least one row"):
        bench.best_guidance_weight([])


# ---- the sampling and evaluation helpers the benchmark uses ------------------------------------------

def test_class_diversity_is_the_mean_pairwise_distance_within_classes():
    features = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [9.0, 9.0]])
    labels = torch.tensor([0, 0, 1, 1, 1, 2])        # class 2 has one member: left out
    assert evaluation.class_diversity(features, labels) == pytest.approx((5.0 + 4.0 / 3.0) / 2)


def test_class_diversity_bad_input():
    with pytest.raises(ValueError, match="labels must have shape"):
        evaluation.class_diversity(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 2"):
        evaluation.class_diversity(torch.zeros(2, 2), torch.tensor([0, 1]))


def test_classifier_guidance_with_w_zero_or_a_late_t_min_is_unconditional_sampling(tiny):
    labels, noise = torch.tensor([2, 5]), sampling.digit_noise(2, seed=3)
    unconditional = sampling.sample_digits(tiny.cfg, labels, 0.0, 4, noise=noise)
    for w, t_min in ((0.0, 0.1), (5.0, 1.0)):       # Euler on 4 steps never evaluates at t = 1
        guided = sampling.classifier_guided_digits(tiny.cfg, tiny.noisy, labels, w, t_min, steps=4, noise=noise)
        torch.testing.assert_close(guided, unconditional)


def test_classifier_guidance_costs_one_unet_pass_per_nfe_and_a_classifier_pass_after_t_min(tiny):
    unet, classifier = Counting(tiny.cfg), Counting(tiny.noisy)
    sampling.classifier_guided_digits(unet, classifier, torch.tensor([1, 2]), 2.0, t_min=0.5, steps=4,
                                      noise=sampling.digit_noise(2))
    assert unet.calls == 4 and classifier.calls == 2        # t = 0.5 and 0.75 of 0, 0.25, 0.5, 0.75


def test_classifier_guidance_follows_the_classifier_gradient(tiny):
    """Euler with the guided velocity equals Euler with v_uncond + w (1-t)/t grad log p(y | x)."""
    labels, noise, w, t_min = torch.tensor([0, 9]), sampling.digit_noise(2, seed=4), 2.0, 0.3

    def expected_velocity(x, t):
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            log_p = torch.log_softmax(tiny.noisy(x_in, t), 1).gather(1, labels[:, None]).sum()
            (grad,) = torch.autograd.grad(log_p, x_in)
        factor = torch.where(t >= t_min, w * (1 - t) / t.clamp(min=t_min), torch.zeros_like(t))
        return tiny.cfg(x, t, y=None) + factor[:, None, None, None] * grad

    with torch.no_grad():
        expected = integrate(expected_velocity, noise, schedules.uniform(5), "euler").clamp(-1, 1)
    got = sampling.classifier_guided_digits(tiny.cfg, tiny.noisy, labels, w, t_min, steps=5, noise=noise)
    torch.testing.assert_close(got, expected)


# ---- the command ----------------------------------------------------------------------------------

def test_the_command_is_registered():
    assert ("bench", "mnist") in cli.COMMANDS


def test_the_command_names_the_missing_checkpoints(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLOWLAB_DATA", str(tmp_path))
    assert cli.main(["bench", "mnist", "--quick"]) == cli.USAGE_ERROR
    assert "mnist_cfg" in capsys.readouterr().err


NEEDED = ("mnist_cfg", "mnist_eval", "mnist_noisy_classifier", "mnist_clean_classifier")


@pytest.mark.skipif(not set(NEEDED) <= set(pretrained.available()), reason="MNIST checkpoints not trained yet")
def test_quick_command_runs_on_the_shipped_checkpoints(capsys):
    assert cli.main(["bench", "mnist", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "(e) 10 digits" in out and "bench took" in out
