"""Data: 2D toy distributions, Gaussian mixtures with an exact flow, and MNIST digits."""
from flowlab.data import mnist, toy
from flowlab.data.gmm import GaussianMixture

__all__ = ["mnist", "toy", "GaussianMixture"]
