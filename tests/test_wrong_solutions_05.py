"""Every exercise check of notebook 05 rejects known wrong solutions (issue #35), with the machinery of
``tests/test_wrong_solutions.py`` (its wrong bodies are put in place of the solution regions; the notebook runs in
smoke + offline mode with ``XAI_STRICT=0``; every check of the exercise must print ``❌ FAIL`` for a wrong *result*,
never ``✅ PASS``, "not done" or "your code raised").

* One full run of the notebook with one typical mistake in each of the three exercises (5.1, 5.2, 5.3).
* Further wrong versions of exercise 5.3 (occlusion), the ones the first edition's check let through (it used a
  black fill and 8-px windows that tile the 32-px image exactly): the fill read at a fixed place, so a fill that
  varies over the image is ignored; windows that tile only, so the cut-off last window is missing. These run a
  short notebook: the cells before the first exercise (setup, parameters, data and models) and the 5.3 cell.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tests.conftest import ROOT
from tests.test_notebooks import execute_notebook, smoke_env
from tests.test_wrong_solutions import BEGIN, _check_lines, _with_wrong_bodies

NAME = "05_lime"

#: exercise function -> (exercise number its check is named with, wrong body); all three in one full run
WRONG_05: dict[str, tuple[str, str]] = {
    # shown and hidden swapped: the segments with z_k = 1 take the fill
    "my_perturb": ("5.1", """
        keep = masks.astype(bool)[:, segments]
        return np.where(keep[..., None], fill[None], image[None]).astype(np.float32)
    """),
    # the paper's kernel exp(-d^2 / sigma^2), without lime's square root
    "my_fit": ("5.2", """
        z = masks.astype(np.float64)
        f = np.asarray(predictions, dtype=np.float64)
        dist = 1 - np.sqrt(z.sum(1) / z.shape[1])
        pi = np.exp(-dist**2 / kernel_width**2)
        z_mean, f_mean = pi @ z / pi.sum(), pi @ f / pi.sum()
        zc, fc = z - z_mean, f - f_mean
        w = np.linalg.solve(zc.T @ (pi[:, None] * zc) + np.eye(z.shape[1]), zc.T @ (pi * fc))
        return w, f_mean - z_mean @ w
    """),
    # the fill hard-coded as black: the `fill` argument is never used
    "my_occlusion": ("5.3", """
        b, _, h, w = x.shape
        black_fill = occlusion.occlusion_fill(x, "black", data.CIFAR10_MEAN, data.CIFAR10_STD)
        total = torch.zeros(b, h, w)
        count = torch.zeros(h, w)
        with torch.no_grad():
            y0 = model(x).gather(1, target[:, None])[:, 0]
            for r in occlusion.window_positions(h, window, stride):
                for c in occlusion.window_positions(w, window, stride):
                    xo = x.clone()
                    xo[:, :, r:r + window, c:c + window] = black_fill[:, :, r:r + window, c:c + window]
                    drop = y0 - model(xo).gather(1, target[:, None])[:, 0]
                    total[:, r:r + window, c:c + window] += drop.view(b, 1, 1).cpu()
                    count[r:r + window, c:c + window] += 1
        return total / count
    """),
}

#: name -> wrong body of my_occlusion (exercise 5.3), each run on the short notebook
WRONG_OCCLUSION: dict[str, str] = {
    # the fill's colour at the top-left pixel used for every window, as if the fill were one colour
    "fill_read_at_a_fixed_place": """
        b, _, h, w = x.shape
        total = torch.zeros(b, h, w)
        count = torch.zeros(h, w)
        with torch.no_grad():
            y0 = model(x).gather(1, target[:, None])[:, 0]
            for r in occlusion.window_positions(h, window, stride):
                for c in occlusion.window_positions(w, window, stride):
                    xo = x.clone()
                    xo[:, :, r:r + window, c:c + window] = fill[:, :, :1, :1]
                    drop = y0 - model(xo).gather(1, target[:, None])[:, 0]
                    total[:, r:r + window, c:c + window] += drop.view(b, 1, 1).cpu()
                    count[r:r + window, c:c + window] += 1
        return total / count
    """,
    # positions range(0, H - window + 1, stride): only windows inside the image, the cut-off last one is missing
    "windows_that_tile_only": """
        b, _, h, w = x.shape
        total = torch.zeros(b, h, w)
        count = torch.zeros(h, w)
        with torch.no_grad():
            y0 = model(x).gather(1, target[:, None])[:, 0]
            for r in range(0, h - window + 1, stride):
                for c in range(0, w - window + 1, stride):
                    xo = x.clone()
                    xo[:, :, r:r + window, c:c + window] = fill[:, :, r:r + window, c:c + window]
                    drop = y0 - model(xo).gather(1, target[:, None])[:, 0]
                    total[:, r:r + window, c:c + window] += drop.view(b, 1, 1).cpu()
                    count[r:r + window, c:c + window] += 1
        return total / count
    """,
}


def _problems(nb, exercise_cells: list[tuple[int, list[str]]], numbers: dict[str, str], label: str) -> list[str]:
    """What is wrong with the check output of the exercise cells (empty: every check failed the wrong result)."""
    problems = []
    for index, functions in exercise_cells:
        lines = _check_lines(nb.cells[index])
        problems += [f"{label}, cell {index}: a check passed: {line}" for line in lines if line.startswith("✅ PASS")]
        for func in functions:
            mine = [line for line in lines if line.split("  ", 1)[-1].startswith(numbers[func] + " ")]
            if not mine:
                problems.append(f"{label}, cell {index}: no check of exercise {numbers[func]} ({func}) printed")
            for line in mine:
                if line.startswith("⏳ TODO"):
                    problems.append(f"{label}, cell {index}: the wrong {func} counts as not done: {line}")
                elif "your code raised" in line:
                    problems.append(f"{label}, cell {index}: the wrong {func} raised instead of returning: {line}")
    return problems


@pytest.mark.notebook
def test_each_check_of_05_rejects_a_known_wrong_solution(fake_data_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = ROOT / "solutions" / f"{NAME}.ipynb"
    nb = nbformat.read(path, as_version=4)
    exercise_cells = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and BEGIN in cell.source:
            cell.source, functions = _with_wrong_bodies(cell.source, WRONG_05)
            exercise_cells.append((index, functions))
    assert {f for _, fs in exercise_cells for f in fs} == set(WRONG_05), "the exercises of 05 changed: update WRONG_05"

    smoke_env(monkeypatch, fake_data_dir, strict=False)
    execute_notebook(nb, path, f"wrong solutions/{NAME}.ipynb")
    problems = _problems(nb, exercise_cells, {f: n for f, (n, _) in WRONG_05.items()}, "all three")
    assert not problems, "\n".join(problems)


@pytest.mark.notebook
@pytest.mark.parametrize("mistake", sorted(WRONG_OCCLUSION))
def test_the_occlusion_check_rejects_wrong_fills_and_windows(mistake: str, fake_data_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = ROOT / "solutions" / f"{NAME}.ipynb"
    nb = nbformat.read(path, as_version=4)
    exercise = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and BEGIN in c.source]
    (occ,) = [i for i in exercise if "def my_occlusion(" in nb.cells[i].source]
    nb.cells = nb.cells[:exercise[0]] + [nb.cells[occ]]  # setup, parameters, data and models; then exercise 5.3
    bodies = {"my_occlusion": ("5.3", WRONG_OCCLUSION[mistake])}
    nb.cells[-1].source, functions = _with_wrong_bodies(nb.cells[-1].source, bodies)
    assert functions == ["my_occlusion"]

    smoke_env(monkeypatch, fake_data_dir, strict=False)
    execute_notebook(nb, path, f"wrong solutions/{NAME}.ipynb ({mistake})")
    problems = _problems(nb, [(len(nb.cells) - 1, functions)], {"my_occlusion": "5.3"}, mistake)
    assert not problems, "\n".join(problems)
