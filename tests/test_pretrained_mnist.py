"""The shipped MNIST checkpoints: they load, their JSON says how they were made, and they work.

Small-sample smoke checks only (the full numbers are in ``flowlab bench mnist``): 100 CFG digits
are recognised, the evaluation classifier is accurate, and on noisy digits the time-conditioned
classifier beats the clean one.
"""
from pathlib import Path

import pytest
import torch

from flowlab import locations, mnist, models, pretrained
from flowlab.metrics import class_accuracy
from flowlab.mnist import evaluation, sampling

EXPECTED = {"mnist_cfg": models.UNet, "mnist_eval": models.EvalClassifier,
            "mnist_noisy_classifier": models.NoisyClassifier, "mnist_clean_classifier": models.CleanClassifier,
            "mnist_condition": models.ImageConditionedUNet}
OPTIONAL = {"mnist_reflow": models.UNet}     # the stretch goal, checked when shipped
RECORD_KEYS = {"config", "data_source", "steps", "train_seconds", "device", "metrics", "lr", "batch_size",
               "ema_decay", "seed"}
MAX_DATA_BYTES = 25 * 1024 * 1024


def shipped(name: str) -> bool:
    return name in pretrained.available()


def needs(*names: str):
    missing = [name for name in names if not shipped(name)]
    return pytest.mark.skipif(bool(missing), reason=f"checkpoints not trained yet: {missing}")


@pytest.fixture(scope="module")
def test_digits() -> mnist.MnistData:
    return mnist.load("test")


def test_every_mnist_checkpoint_is_shipped():
    assert set(EXPECTED) <= set(pretrained.available()), pretrained.available()


@pytest.mark.parametrize("name", sorted(EXPECTED) + sorted(OPTIONAL))
def test_checkpoint_loads_and_records_how_it_was_made(name):
    if not shipped(name):
        pytest.skip(f"{name} is not shipped")
    model = pretrained.load(name)
    assert isinstance(model, {**EXPECTED, **OPTIONAL}[name]) and not model.training
    assert all(torch.isfinite(p).all() for p in model.parameters())
    record = pretrained.info(name)
    assert RECORD_KEYS <= set(record), sorted(RECORD_KEYS - set(record))
    assert record["model"] == type(model).__name__ and record["config"] == model.config
    assert isinstance(record["steps"], int) and record["steps"] > 0
    assert record["train_seconds"] > 0 and isinstance(record["device"], str)
    if record["device"] == "cpu":
        assert record["train_seconds"] <= 30 * 60, "each checkpoint trains in at most 30 minutes on the CPU"
    assert isinstance(record["data_source"], str) and record["data_source"]   # which MNIST it saw
    assert isinstance(record["metrics"], dict) and record["metrics"]


@needs("mnist_eval")
def test_the_evaluation_classifier_is_accurate(test_digits):
    logits, features = evaluation.eval_outputs(pretrained.load("mnist_eval"), test_digits.images)
    accuracy = class_accuracy(logits, test_digits.labels)
    assert accuracy >= 0.97, accuracy
    assert features.shape == (len(test_digits), 128)


@needs("mnist_cfg", "mnist_eval")
def test_100_cfg_samples_are_recognised():
    """10 a class, w = 3, 20 Euler steps (40 UNet passes): at least 90% classified as asked."""
    labels = sampling.balanced_labels(10)
    samples = sampling.sample_digits(pretrained.load("mnist_cfg"), labels, w=3.0, steps=20, method="euler")
    assert samples.shape == (100, 1, 28, 28) and samples.min() >= -1 and samples.max() <= 1
    logits, _ = evaluation.eval_outputs(pretrained.load("mnist_eval"), samples)
    accuracy = class_accuracy(logits, labels)
    assert accuracy >= 0.90, accuracy


@needs("mnist_noisy_classifier", "mnist_clean_classifier")
def test_the_noisy_classifier_beats_the_clean_one_on_x_t():
    noisy = evaluation.noisy_accuracy(pretrained.load("mnist_noisy_classifier"), times=(0.5, 1.0))
    clean = evaluation.noisy_accuracy(pretrained.load("mnist_clean_classifier"), times=(0.5, 1.0))
    assert noisy["t=0.5"] > clean["t=0.5"] + 0.05, (noisy, clean)
    assert clean["t=1"] >= 0.9 and noisy["t=1"] >= 0.9          # both know clean digits


@needs("mnist_cfg")
def test_cpu_and_device_give_the_same_samples(device):
    if device.type == "cpu":
        pytest.skip("compares the CPU with an accelerator")
    labels, noise = sampling.balanced_labels(2), sampling.digit_noise(20, seed=7)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False   # full float32
    try:
        on_cpu = sampling.sample_digits(pretrained.load("mnist_cfg"), labels, 3.0, 10, "heun", noise=noise)
        on_device = sampling.sample_digits(pretrained.load("mnist_cfg", device), labels, 3.0, 10, "heun",
                                             noise=noise)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    torch.testing.assert_close(on_device, on_cpu, rtol=0, atol=1e-3)


def test_data_folder_stays_small():
    """Everything under data/ that the repository ships (not the ignored MNIST download cache)."""
    data = locations.checkout_data_dir()
    shipped_files = [p for p in data.rglob("*") if p.is_file()
                     and not (p.parent.name == "mnist" and ("-ubyte" in p.name or p.name.startswith(".")))]
    total = sum(p.stat().st_size for p in shipped_files)
    assert total < MAX_DATA_BYTES, f"data/ holds {total / 2**20:.1f} MB"
