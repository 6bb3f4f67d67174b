"""Model checkpoints: weights in safetensors, everything else in a JSON file beside them.

``save("data/checkpoints/moons", model, meta)`` writes two files::

    data/checkpoints/moons.safetensors   the state_dict (safetensors: no pickle, safe to load)
    data/checkpoints/moons.json          {"model": "MLP", "config": {...}, **meta}

``meta`` is free-form JSON (steps, train_seconds, device, data, metrics, ...). ``load`` reads the
JSON, rebuilds ``model_class(**config)`` from the classes exported by ``flowlab.models`` and loads
the weights. A ``path`` may be given with or without the ``.safetensors`` / ``.json`` suffix.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

RESERVED_KEYS = ("model", "config")


def model_registry() -> dict[str, type[nn.Module]]:
    """``{class name: class}`` for every ``nn.Module`` listed in ``flowlab.models.__all__``."""
    import flowlab.models as models

    classes = (getattr(models, name) for name in getattr(models, "__all__", ()))
    return {cls.__name__: cls for cls in classes if isinstance(cls, type) and issubclass(cls, nn.Module)}


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """The ``(weights, metadata)`` file pair ``<stem>.safetensors``, ``<stem>.json`` for ``path``."""
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def save(path: str | Path, model: nn.Module, meta: dict | None = None) -> tuple[Path, Path]:
    """Write ``model``'s weights and ``{"model": class name, "config": model.config, **meta}``.

    The model must have a JSON-serialisable ``config`` dict of constructor arguments, and its
    class must be exported by ``flowlab.models``. Weights are stored on the CPU. Parent folders
    are created. Returns the two paths written.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise TypeError(f"model must keep its constructor arguments in a dict `model.config` so that "
                        f"it can be rebuilt; {type(model).__name__} has config={config!r}")
    name = type(model).__name__
    if name not in model_registry():
        raise ValueError(f"model class {name!r} is not exported by flowlab.models, so load() could "
                         f"not rebuild it; known classes: {sorted(model_registry())}")
    meta = dict(meta or {})
    clashes = [key for key in RESERVED_KEYS if key in meta]
    if clashes:
        raise ValueError(f"meta must not contain the reserved keys {clashes}; they are written by save()")
    record = {"model": name, "config": config, **meta}
    try:
        text = json.dumps(record, indent=2, sort_keys=False)
    except TypeError as error:
        raise TypeError(f"meta and model.config must be JSON-serialisable: {error}") from error
    weights_path, meta_path = checkpoint_paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(weights_path))
    weights_path.chmod(0o644)  # safetensors writes 0600; a checkpoint is data that graders and students read
    meta_path.write_text(text + "\n")
    return weights_path, meta_path


def read_meta(path: str | Path) -> dict:
    """The JSON record of a checkpoint (``{"model", "config", **meta}``) without loading weights."""
    _, meta_path = checkpoint_paths(path)
    if not meta_path.is_file():
        raise FileNotFoundError(f"checkpoint metadata {meta_path} not found (expected next to the "
                                f".safetensors file, as written by flowlab.checkpoints.save)")
    record = json.loads(meta_path.read_text())
    if not isinstance(record, dict) or not all(key in record for key in RESERVED_KEYS):
        raise ValueError(f"{meta_path} is not a flowlab checkpoint record: it needs the keys "
                         f"{list(RESERVED_KEYS)}")
    return record


def load(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model saved at ``path`` and load its weights; returns ``(model, meta)``.

    ``meta`` is the JSON record without the ``"model"`` and ``"config"`` keys. The model is put on
    ``map_location`` and left in training mode (call ``.eval()`` to sample).
    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` for an unknown model class or
    weights that do not fit the rebuilt model.
    """
    weights_path, meta_path = checkpoint_paths(path)
    if not weights_path.is_file():
        raise FileNotFoundError(f"checkpoint weights {weights_path} not found")
    record = read_meta(path)
    registry = model_registry()
    if record["model"] not in registry:
        raise ValueError(f"unknown model class {record['model']!r} in {meta_path}; "
                         f"expected one of {sorted(registry)}")
    model = registry[record["model"]](**record["config"])
    state = load_file(str(weights_path), device="cpu")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"the weights in {weights_path} do not fit {record['model']}"
                         f"(**{record['config']}): {error}") from error
    meta = {key: value for key, value in record.items() if key not in RESERVED_KEYS}
    return model.to(map_location), meta
