"""Data: 2D toy distributions and Gaussian mixtures with an exact flow (MNIST digits: ``flowlab.mnist``)."""
from flowlab.data import toy
from flowlab.data.gmm import GaussianMixture

__all__ = ["toy", "GaussianMixture"]
