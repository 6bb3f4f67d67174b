"""Velocity networks and classifiers. Every model keeps its constructor arguments in
``model.config`` so that ``flowlab.checkpoints.load`` can rebuild it from the class name listed in
``__all__``."""
from flowlab.models.classifier import CleanClassifier, EvalClassifier, NoisyClassifier
from flowlab.models.conditioned import ImageConditionedUNet
from flowlab.models.mlp import MLP
from flowlab.models.unet import UNet

__all__ = ["MLP", "UNet", "NoisyClassifier", "CleanClassifier", "EvalClassifier", "ImageConditionedUNet"]
