"""tools/colab_standin.py: finding Python 3.13, the versions file, the cache key. The stand-in run itself is
``make colab-standin`` (minutes; CI runs it)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import colab_standin  # noqa: E402


def _no_system_python(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    monkeypatch.setattr(colab_standin, "SYSTEM_PYTHONS", [])
    return {"PATH": str(tmp_path / "empty-bin"), "HOME": str(tmp_path), "PYENV_ROOT": str(tmp_path / "pyenv")}


def test_missing_python_fails_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = _no_system_python(monkeypatch, tmp_path)
    with pytest.raises(colab_standin.StandInError, match=r"no Python 3\.13 found.*XAI_COLAB_PYTHON"):
        colab_standin.find_python(env)


def test_wrong_override_fails_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = dict(_no_system_python(monkeypatch, tmp_path), XAI_COLAB_PYTHON=sys.executable)  # 3.11 here
    if sys.version_info[:2] == (3, 13):
        pytest.skip("this interpreter is 3.13")
    with pytest.raises(colab_standin.StandInError, match="is not a working Python 3.13"):
        colab_standin.find_python(env)


def test_a_broken_shim_on_path_is_skipped_and_pyenv_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    try:
        real = colab_standin.find_python()
    except colab_standin.StandInError:
        pytest.skip("no Python 3.13 on this machine")
    env = _no_system_python(monkeypatch, tmp_path)
    shim = tmp_path / "empty-bin" / "python3.13"
    shim.parent.mkdir()
    shim.write_text("#!/bin/sh\necho 'pyenv: python3.13: command not found' >&2\nexit 127\n")
    shim.chmod(0o755)
    with pytest.raises(colab_standin.StandInError, match=str(shim)):
        colab_standin.find_python(env)
    fake = tmp_path / "pyenv" / "versions" / "3.13.9" / "bin" / "python3.13"
    fake.parent.mkdir(parents=True)
    fake.symlink_to(real)
    assert colab_standin.find_python(env) == str(fake)


def test_versions_file_pins_every_package_the_issue_names() -> None:
    pins = colab_standin.pinned_versions()
    for name in ("torch", "torchvision", "numpy", "matplotlib", "scikit-image", "scikit-learn", "ipywidgets", "timm"):
        assert name in pins
    assert pins["ipywidgets"] == "7.7.1", "Colab's preinstalled widgets"


def test_versions_file_rejects_ranges(tmp_path: Path) -> None:
    bad = tmp_path / "v.txt"
    bad.write_text("# c\ntorch>=2.9\n")
    with pytest.raises(colab_standin.StandInError, match="pins one version"):
        colab_standin.pinned_versions(bad)
    bad.write_text("torch==2.9,<3\n")
    with pytest.raises(colab_standin.StandInError, match="pins one version"):
        colab_standin.pinned_versions(bad)


def test_cache_key_follows_the_versions_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("torch==2.10.0\n")
    b.write_text("torch==2.11.0\n")
    assert colab_standin.env_key(sys.executable, a) == colab_standin.env_key(sys.executable, a)
    assert colab_standin.env_key(sys.executable, a) != colab_standin.env_key(sys.executable, b)
