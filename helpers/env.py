"""Environment: Colab detection, run modes, device, seeds and the data cache directory.

Modes are read from environment variables every time they are asked for:

* ``XAI_SMOKE=1``: shrink data, steps and image counts so a notebook runs in seconds (tests, CI).
* ``XAI_OFFLINE=1``: never download; pretrained models get random weights (with a visible warning).
* ``XAI_STRICT=1``: an exercise check that fails (or is not done) raises instead of printing.
* ``XAI_DATA_DIR``: where datasets and downloaded weights are cached (default: the user cache dir).
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

__all__ = [
    "in_colab",
    "smoke",
    "offline",
    "strict",
    "get_device",
    "seed_everything",
    "data_dir",
    "repo_root",
    "report",
]

_TRUE = {"1", "true", "yes", "on"}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def in_colab() -> bool:
    """True when running inside Google Colab (the ``google.colab`` module is importable)."""
    if "google.colab" in sys.modules:
        return True
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True


def smoke() -> bool:
    """``XAI_SMOKE=1``: tiny data and few steps, for tests."""
    return _flag("XAI_SMOKE")


def offline() -> bool:
    """``XAI_OFFLINE=1``: no downloads; pretrained models get random weights."""
    return _flag("XAI_OFFLINE")


def strict() -> bool:
    """``XAI_STRICT=1``: failed or unfinished exercise checks raise."""
    return _flag("XAI_STRICT")


def get_device(prefer_gpu: bool = True):
    """``cuda`` when a GPU is available (and wanted), else ``cpu``. Returns a ``torch.device``."""
    import torch

    if prefer_gpu and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) random number generators."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def data_dir() -> Path:
    """The cache directory for datasets and weights: ``$XAI_DATA_DIR`` or ``~/.cache/xai-course`` (created)."""
    env = os.environ.get("XAI_DATA_DIR")
    if env:
        path = Path(env).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "xai-course"
    path.mkdir(parents=True, exist_ok=True)
    return path


def repo_root() -> Path:
    """The course repository's root directory (the folder that holds ``helpers/``)."""
    return Path(__file__).resolve().parent.parent


def report(seed: int = 0):
    """Seed everything, print where and how the notebook runs, and return ``(SMOKE, OFFLINE, STRICT, DEVICE)``."""
    import torch

    seed_everything(seed)
    device = get_device()
    where = "Google Colab" if in_colab() else "local"
    if device.type == "cuda":
        hw = f"GPU ({torch.cuda.get_device_name(0)})"
    else:
        hw = f"CPU ({torch.get_num_threads()} threads)"
        if in_colab():
            hw += " -- for speed choose Runtime > Change runtime type > T4 GPU"
    modes = [name for name, on in (("SMOKE", smoke()), ("OFFLINE", offline()), ("STRICT", strict())) if on]
    print(f"Running {where} on {hw}; torch {torch.__version__}; modes: {', '.join(modes) or 'normal'}; seed {seed}")
    if offline():
        print(
            "OFFLINE mode: nothing is downloaded and pretrained models use RANDOM weights -- "
            "their explanations are meaningless."
        )
    return smoke(), offline(), strict(), device
