"""Velocity networks. Every model keeps its constructor arguments in ``model.config`` so that
``flowlab.checkpoints.load`` can rebuild it from the class name listed in ``__all__``."""
from flowlab.models.mlp import MLP

__all__ = ["MLP"]
