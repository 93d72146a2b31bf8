"""Saving and loading the course's trained checkpoints, verified by SHA-256.

A checkpoint is a plain dict ``{"config": dict, "state_dict": dict, "meta": dict}`` saved with ``torch.save`` and
read back with ``torch.load(weights_only=True)``, so loading never runs pickled code. ``data/checkpoints/
manifest.json`` records the SHA-256 of every shipped file; a file whose hash differs is refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import env
from .cifar_models import CNNConfig, ViTConfig, build_model, config_dict

__all__ = ["CHECKPOINT_DIR", "sha256_file", "save_checkpoint", "load_checkpoint", "shipped_checkpoints"]

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "data" / "checkpoints"
MANIFEST = "manifest.json"

#: The architectures of the shipped checkpoints (tools/train_checkpoint.py trains exactly these).
ARCHITECTURES: dict[str, ViTConfig | CNNConfig] = {
    "vit_cifar10": ViTConfig(dim=128, depth=4, heads=4, mlp_ratio=2.0, tokenizer="resnet", stem_channels=(32, 64)),
    "cnn_cifar10": CNNConfig(),
    # notebook 07: the shape-classification CNN of helpers.synthetic (tools/train_shapes.py)
    "cnn_shapes": CNNConfig(num_classes=4, widths=(16, 32, 64, 128)),
    # notebook 07: cnn_cifar10's architecture trained on permuted labels (tools/train_random_labels.py)
    "cnn_cifar10_random_labels": CNNConfig(),
    # notebook 08: the small deep ensemble (tools/train_ensemble.py): quarter-width CNNs, one seed each
    **{f"cnn_small_ens{k}": CNNConfig(widths=(16, 32, 64, 128)) for k in range(4)},
}


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, has the wrong hash or does not fit the architecture."""


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def shipped_checkpoints(directory: str | Path = CHECKPOINT_DIR) -> dict[str, Any]:
    """The manifest: checkpoint name -> {"file", "sha256", ...metadata}."""
    return _read_manifest(Path(directory))


def save_checkpoint(
    model: nn.Module,
    name: str,
    meta: dict[str, Any] | None = None,
    directory: str | Path = CHECKPOINT_DIR,
    half: bool = False,
) -> Path:
    """Save a course model as ``<directory>/<name>.pt`` (CPU weights) and record its SHA-256 in the manifest.

    Floating-point tensors are stored as fp32, or as fp16 with ``half=True`` (half the file size; loading casts them
    back to the model's fp32 parameters, so the loaded model is the fp16-rounded one: measure accuracy after loading).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.pt"
    dtype = torch.float16 if half else torch.float32
    state = {
        k: v.detach().to(dtype).cpu().clone() if v.is_floating_point() else v.detach().cpu().clone()
        for k, v in model.state_dict().items()
    }
    torch.save({"config": config_dict(model), "state_dict": state, "meta": dict(meta or {})}, path)
    manifest = _read_manifest(directory)
    manifest[name] = {"file": path.name, "sha256": sha256_file(path), **(meta or {})}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def load_checkpoint(
    name: str, directory: str | Path = CHECKPOINT_DIR, expected_config: dict | None = None
) -> nn.Module:
    """Load a checkpoint by name: the trained model, in eval mode, on the CPU.

    Raises :class:`CheckpointError` (with the fix) when the name is unknown, the file is missing, its SHA-256 does
    not match the manifest, it is not a course checkpoint, or its weights do not fit the architecture.
    """
    directory = Path(directory)
    manifest = _read_manifest(directory)
    if (
        name in ARCHITECTURES
        and (name not in manifest or not (directory / manifest[name]["file"]).exists())
        and env.offline()
    ):
        print(f"WARNING (XAI_OFFLINE=1): checkpoint {name!r} is not available; using RANDOMLY INITIALISED weights.")
        return build_model(ARCHITECTURES[name]).eval()
    if name not in manifest:
        known = ", ".join(sorted(manifest)) or "none"
        raise CheckpointError(f"unknown checkpoint {name!r}; shipped checkpoints: {known}")
    entry = manifest[name]
    path = directory / entry["file"]
    if not path.exists():
        raise CheckpointError(
            f"checkpoint file {path} is missing; restore it with `git checkout -- {path.name}` "
            "or re-create it with tools/train_checkpoint.py (see data/checkpoints/README.md)"
        )
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise CheckpointError(
            f"checkpoint {path} has SHA-256 {digest[:12]}..., expected {entry['sha256'][:12]}...: "
            "the file is corrupt or was changed. Restore it with git, or retrain and re-save it."
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CheckpointError(f"could not read checkpoint {path}: {exc}") from exc
    if not isinstance(ckpt, dict) or not {"config", "state_dict"} <= set(ckpt):
        raise CheckpointError(f"{path} is not a course checkpoint (expected keys 'config' and 'state_dict')")
    if expected_config is None and name in ARCHITECTURES:
        expected_config = config_dict(build_model(ARCHITECTURES[name]))
    if expected_config is not None and dict(ckpt["config"]) != dict(expected_config):
        raise CheckpointError(f"checkpoint {name!r} was saved for another architecture: {ckpt['config']} "
                              f"differs from the expected {expected_config}")
    config = expected_config if expected_config is not None else ckpt["config"]
    try:
        model = build_model(config)
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {name!r} does not fit the architecture: {exc}") from exc
    model.meta = ckpt.get("meta", {})  # type: ignore[assignment]
    return model.eval()
