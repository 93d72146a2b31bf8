"""Environment: Colab detection, run modes, device, seeds and the data cache directory.

Modes are read from environment variables every time they are asked for:

* ``XAI_SMOKE=1``: shrink data, steps and image counts so a notebook runs in seconds (tests, CI).
* ``XAI_OFFLINE=1``: never download; pretrained models get random weights (with a visible warning).
* ``XAI_STRICT=1``: an exercise check that fails (or is not done) raises instead of printing.
* ``XAI_DATA_DIR``: where datasets and downloaded weights are cached (default: the user cache dir).
* ``XAI_DEVICE``: where tensors live: ``cuda``, ``mps``, ``cpu`` force that device (an error if it is not there);
  ``sim`` runs on a *simulated GPU* (:mod:`helpers.simulated_device`: CUDA's placement rules, CPU compute, for CI on
  machines without a GPU); unset: a CUDA GPU when there is one, else the CPU.
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
    "device_choice",
    "simulated",
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


DEVICE_CHOICES = ("sim", "cpu", "cuda", "mps")


def device_choice() -> str | None:
    """``XAI_DEVICE`` lower-cased (``None`` when unset or empty); an unknown value raises ``ValueError``."""
    value = os.environ.get("XAI_DEVICE", "").strip().lower()
    if not value:
        return None
    if value not in DEVICE_CHOICES:
        raise ValueError(f"XAI_DEVICE={os.environ['XAI_DEVICE']!r} is not a device choice: use one of "
                         f"{', '.join(DEVICE_CHOICES)} (or leave it unset for a CUDA GPU when there is one, else the "
                         "CPU)")
    return value


def get_device(prefer_gpu: bool = True):
    """The ``torch.device`` to compute on, from ``XAI_DEVICE`` (see the module docstring).

    Unset: ``cuda`` when a GPU is available (and ``prefer_gpu``), else ``cpu``. ``XAI_DEVICE=sim`` turns the
    simulated GPU on (for the rest of the session) and returns ``torch.device("cuda")``: tensors moved there are
    checked as on CUDA and computed on the CPU. ``cuda``/``mps`` where there is none raise ``RuntimeError``."""
    import torch

    choice = device_choice()
    if choice is None:
        return torch.device("cuda" if prefer_gpu and torch.cuda.is_available() else "cpu")
    if choice == "sim":
        from helpers import simulated_device

        return simulated_device.activate()
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("XAI_DEVICE=cuda but torch finds no CUDA GPU here: choose one of "
                           f"{', '.join(DEVICE_CHOICES)}, or unset XAI_DEVICE")
    if choice == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("XAI_DEVICE=mps but torch finds no Apple GPU (MPS) here: choose one of "
                           f"{', '.join(DEVICE_CHOICES)}, or unset XAI_DEVICE")
    return torch.device(choice)


def simulated() -> bool:
    """True while the simulated GPU (``XAI_DEVICE=sim``) is on."""
    if "helpers.simulated_device" not in sys.modules:
        return False
    return sys.modules["helpers.simulated_device"].active()


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
    if simulated():
        hw = (f"a SIMULATED GPU (XAI_DEVICE=sim: CUDA's device rules are checked, the compute runs on the CPU, "
              f"{torch.get_num_threads()} threads; DEVICE is {device})")
    elif device.type == "cuda":
        hw = f"GPU ({torch.cuda.get_device_name(0)})"
    elif device.type == "mps":
        hw = "Apple GPU (MPS)"
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
