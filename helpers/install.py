"""Install what the course needs that the running Python lacks (used by the setup cell on Colab).

This runs before anything else of the course is importable, so it needs only the standard library and
``packaging`` (preinstalled on Colab, and a dependency of pip, Jupyter and matplotlib). Colab preinstalls torch,
torchvision, numpy, matplotlib, scikit-image, ipywidgets, ...; replacing them would waste minutes and can break the
runtime (widgets 8 break Colab's frontend), so only packages that are missing, or whose installed version does not
satisfy requirements.txt, are installed, and torch/torchvision/numpy never are. The decision uses the same rules
as pip (PEP 440 specifiers, PEP 503 names): ``~=1.5`` means ``>=1.5, ==1.*``; ``==1.5`` matches 1.5.0 but not
1.5.1; an installed pre-release counts when it lies in the range.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from packaging.requirements import Requirement

__all__ = [
    "IMPORT_NAMES",
    "NEVER_INSTALL",
    "read_requirements",
    "requirement_satisfied",
    "missing_requirements",
    "install_missing",
]

#: distribution name (normalised) -> module to import, where they differ
IMPORT_NAMES = {
    "grad-cam": "pytorch_grad_cam",
    "torch-lucent": "lucent",
    "scikit-image": "skimage",
    "scikit-learn": "sklearn",
    "fpdf2": "fpdf",
    "pillow": "PIL",
}
#: never (re)installed by the setup cell: Colab's own builds must stay (normalised names)
NEVER_INSTALL = frozenset({"torch", "torchvision", "numpy"})
_COMMENT = re.compile(r"(^|\s)#.*$")  # pip's rule: '#' starts a comment at the line start or after whitespace


def _packaging():
    """The ``packaging`` modules, or a clear error saying how to get them."""
    try:
        from packaging import requirements, utils, version
    except ImportError as exc:
        raise RuntimeError(
            "The course's setup needs the Python package 'packaging' to compare versions (Colab preinstalls it). "
            "Install it with `pip install packaging` (in a notebook: `%pip install packaging`), then re-run the cell."
        ) from exc
    return requirements, utils, version


def read_requirements(path: str | Path) -> list[Requirement]:
    """``requirements.txt`` -> parsed requirements, skipping comments, blank lines, option lines (``-r``, ``-c``,
    ``--index-url``) and requirements whose environment marker does not apply here. A malformed line raises
    ``ValueError`` naming the file and line."""
    requirements, _, _ = _packaging()
    out = []
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = _COMMENT.sub("", raw).strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            req = requirements.Requirement(line)
        except requirements.InvalidRequirement as exc:
            raise ValueError(f"{path}, line {number}: not a requirement: {raw.strip()!r} ({exc})") from exc
        if req.marker is None or req.marker.evaluate():
            out.append(req)
    return out


def _canonical(name: str) -> str:
    _, utils, _ = _packaging()
    return str(utils.canonicalize_name(name))


def requirement_satisfied(req: Requirement | str, installed: str | None) -> bool:
    """Whether an installed version (``None``: not installed) satisfies ``req``, as pip decides it: PEP 440
    specifiers, local labels such as ``+cu126`` ignored, an installed pre-release accepted when it lies in the range.
    A version that is not PEP 440 (an odd local build) does not satisfy any specifier but is accepted when there
    is none."""
    requirements, _, version = _packaging()
    if isinstance(req, str):
        req = requirements.Requirement(req)
    if installed is None:
        return False
    if not req.specifier:
        return True
    try:
        have = version.Version(installed)
    except version.InvalidVersion:
        return False
    return req.specifier.contains(have, prereleases=True)


def _installed_version(dist: str) -> str | None:
    """The installed version of a distribution; ``"?"`` when its module is importable without package metadata;
    ``None`` when its module cannot be found."""
    canonical = _canonical(dist)
    if importlib.util.find_spec(IMPORT_NAMES.get(canonical, canonical.replace("-", "_"))) is None:
        return None
    try:
        return importlib.metadata.version(canonical)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def missing_requirements(path: str | Path) -> list[str]:
    """Requirements of ``path`` (as ``name<spec>`` strings) that the running Python does not satisfy, never
    torch/torchvision/numpy. A module that is importable without package metadata is accepted as it is."""
    missing = []
    for req in read_requirements(path):
        if _canonical(req.name) in NEVER_INSTALL:
            continue
        have = _installed_version(req.name)
        if have == "?" or requirement_satisfied(req, have):
            continue
        missing.append(str(req))
    return missing


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
