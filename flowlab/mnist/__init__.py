"""The MNIST layer of flowlab, built on the core (``paths``, ``solvers``, ``guidance``, ``distill``, ``train``).

* ``data``: the digits (IDX files, checked download, offline fallback); ``load``, ``subset`` and
  ``MnistData`` are re-exported here, so ``from flowlab import mnist; mnist.load("test")`` works.
* ``sampling``: digits from a class-conditional model with CFG or classifier guidance, a batch at a time.
* ``evaluation``: accuracy and Frechet distance under the evaluation classifier, diversity, sweeps.
* ``editing``: inversion, regeneration, class swap and SDEdit of digits.
* ``inpainting``: training-free completion with an unconditional flow (known region replaced on its path).
* ``reflow``: what reflow needs on MNIST beyond ``flowlab.distill``: the CFG teacher and its labels.
* ``recipes``: how each MNIST checkpoint is trained (``flowlab train mnist-*``) and what it records.
* ``bench``: ``flowlab bench mnist``.

Imports go one way: ``data`` <- ``sampling`` <- ``evaluation``, ``editing``, ``reflow`` <- ``recipes``,
``bench``; ``evaluation`` and ``reflow`` do not import each other.
"""
from flowlab.mnist.data import MnistData, load, subset

__all__ = ["MnistData", "load", "subset"]
