"""Install what the course needs that the running Python lacks (used by the setup cell on Colab).

Standard library only: this runs before anything else is importable. Colab preinstalls torch, torchvision, numpy,
matplotlib, scikit-image, ...; reinstalling them would waste minutes and can break the runtime, so only packages
that are missing (or older than requirements.txt asks) are installed, and torch/torchvision/numpy never are.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

__all__ = ["IMPORT_NAMES", "NEVER_INSTALL", "read_requirements", "missing_requirements", "install_missing"]

#: distribution name -> module to import, where they differ
IMPORT_NAMES = {
    "grad-cam": "pytorch_grad_cam",
    "torch-lucent": "lucent",
    "scikit-image": "skimage",
    "scikit-learn": "sklearn",
    "fpdf2": "fpdf",
    "pillow": "PIL",
}
#: never (re)installed by the setup cell: Colab's own builds must stay
NEVER_INSTALL = {"torch", "torchvision", "numpy"}

_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*?)\s*(?:#.*)?$")


def read_requirements(path: str | Path) -> list[tuple[str, str]]:
    """``requirements.txt`` -> [(distribution name, specifier)], skipping comments, blanks and ``-r`` lines."""
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        m = _REQ.match(line)
        if m:
            out.append((m.group(1).lower(), m.group(2).replace(" ", "")))
    return out


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", v)[:4])


def _satisfied(dist: str, spec: str) -> bool:
    module = IMPORT_NAMES.get(dist, dist.replace("-", "_"))
    if importlib.util.find_spec(module) is None:
        return False
    try:
        installed = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return True  # importable under another distribution name: accept it
    for clause in filter(None, spec.split(",")):
        op, ver = re.match(r"(>=|<=|==|<|>|~=|!=)?(.*)", clause).groups()  # type: ignore[union-attr]
        have, want = _version_tuple(installed), _version_tuple(ver)
        ok = {
            ">=": have >= want,
            "~=": have >= want,
            ">": have > want,
            "<": have < want,
            "<=": have <= want,
            "==": have[: len(want)] == want,
            "!=": have[: len(want)] != want,
            None: True,
        }[op]
        if not ok:
            return False
    return True


def missing_requirements(path: str | Path) -> list[str]:
    """Requirement lines (``name>=x``) of ``path`` that are not satisfied here, never torch/torchvision/numpy."""
    return [f"{d}{s}" for d, s in read_requirements(path) if d not in NEVER_INSTALL and not _satisfied(d, s)]


def install_missing(path: str | Path | None = None, quiet: bool = True) -> list[str]:
    """pip-install the missing requirements of the course's ``requirements.txt``; returns what was installed."""
    path = Path(path) if path else Path(__file__).resolve().parent.parent / "requirements.txt"
    missing = missing_requirements(path)
    if missing:
        print("Installing:", " ".join(missing))
        cmd = [sys.executable, "-m", "pip", "install", *(["-q"] if quiet else []), *missing]
        subprocess.run(cmd, check=True)
        importlib.invalidate_caches()
    return missing
