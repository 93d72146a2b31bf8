"""Hints live in helpers.hints, not in the notebooks, and a check prints one only when it fails."""

from __future__ import annotations

import ast

import nbformat
import pytest

from helpers import checks
from helpers.hints import HINTS, hint_for
from tests.conftest import ROOT


def _check_calls(folder: str) -> list[tuple[str, str, ast.Call]]:
    """(notebook, check name, call) for every exercise check call in a folder's notebooks: ``checks.check``,
    ``checks.check_close`` and the module checks named ``check_*`` (e.g. ``cam.check_grad_cam``)."""
    out = []
    for path in sorted((ROOT / folder).glob("[0-9][0-9]_*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code" or ".check" not in cell.source:
                continue
            for node in ast.walk(ast.parse(cell.source)):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and (node.func.attr == "check" or node.func.attr.startswith("check_"))
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                ):
                    out.append((path.name, node.args[0].value, node))
    return out


def test_every_exercise_check_has_a_registered_hint() -> None:
    calls = [(nb, name) for nb, name, _ in _check_calls("solutions") if not name.startswith("demo")]
    assert calls, "no exercise checks found"
    missing = [f"{nb}: {name!r}" for nb, name in calls if not hint_for(name)]
    assert not missing, f"add a hint to helpers/hints.py for: {missing}"


def test_every_registered_hint_belongs_to_an_exercise() -> None:
    numbers = {name.split()[0] for _, name, _ in _check_calls("solutions")}
    # only the notebooks that exist; a hint for an unfinished notebook's exercise may come first
    present = {p.name[:2].lstrip("0") or "0" for p in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")}
    orphans = [n for n in HINTS if n.split(".")[0] in present and n not in numbers]
    assert not orphans, f"hints for exercises that no check names: {orphans}"


def test_student_notebooks_show_no_exercise_hint() -> None:
    """No hint= in an exercise check, and no registered hint anywhere in a student notebook's source."""
    explicit = [(nb, name) for nb, name, call in _check_calls("notebooks") if not name.startswith("demo")
                and any(k.arg == "hint" for k in call.keywords)]
    assert not explicit, f"move these hints to helpers/hints.py: {explicit}"
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
        shown = [n for n, h in HINTS.items() if h in text]
        assert not shown, f"{path.name} shows the hint of {shown}"


def _fails() -> None:
    raise AssertionError("output: values differ")


def test_registered_hint_prints_only_on_failure(capsys: pytest.CaptureFixture[str]) -> None:
    assert checks.check("4.1 Grad-CAM", _fails, strict=False).status == "failed"
    assert f"Hint: {HINTS['4.1']}" in capsys.readouterr().out
    assert checks.check("4.1 Grad-CAM", lambda: "ok", strict=False).passed
    assert "Hint" not in capsys.readouterr().out

    def not_done() -> None:
        raise NotImplementedError

    assert checks.check("4.1 Grad-CAM", not_done, strict=False).status == "not done"
    assert "Hint" not in capsys.readouterr().out


def test_explicit_hint_wins_and_empty_hint_disables(capsys: pytest.CaptureFixture[str]) -> None:
    checks.check("4.1 Grad-CAM", _fails, hint="look here", strict=False)
    out = capsys.readouterr().out
    assert "Hint: look here" in out and HINTS["4.1"] not in out
    checks.check("4.1 Grad-CAM", _fails, hint="", strict=False)
    assert "Hint" not in capsys.readouterr().out
    checks.check("9.9 unknown", _fails, strict=False)
    assert "Hint" not in capsys.readouterr().out


def test_check_close_uses_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    checks.check_close("0.1 softmax", lambda x: x + 1, lambda x: x, args=(1.0,), strict=False)
    assert f"Hint: {HINTS['0.1']}" in capsys.readouterr().out
    checks.check_close("0.1 softmax", lambda x: 1 / 0, lambda x: x, args=(1.0,), strict=False)
    assert f"Hint: {HINTS['0.1']}" in capsys.readouterr().out  # an error in the student's code, too


def test_hint_for_rejects_a_non_string() -> None:
    with pytest.raises(TypeError, match="check name is a string"):
        hint_for(4.1)  # type: ignore[arg-type]
    assert hint_for("") == "" and hint_for("1.1a patchify") == HINTS["1.1a"]
