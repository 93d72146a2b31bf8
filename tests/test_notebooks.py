"""Execute every solution and every student notebook top to bottom in a real Jupyter kernel, offline.

Solutions run with ``XAI_SMOKE=1 XAI_OFFLINE=1 XAI_STRICT=1``: every exercise check must pass. Student copies run
with every exercise unsolved (``XAI_STRICT=0``): they must still reach the end, and every check must say "not done"
rather than fail. Run times are printed at the end of the session (see conftest.py).

Every notebook runs twice: on the device ``helpers.env`` picks by default (the CPU here) and on the simulated GPU
(``XAI_DEVICE=sim``, :mod:`helpers.simulated_device`), which raises where a real GPU would (a CPU tensor next to a
GPU one, a GPU tensor handed to NumPy or matplotlib). The simulated runs have ids ending in ``-sim`` (``-k sim``
selects them).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import NOTEBOOK_TIMES, ROOT, SLOWEST_CELLS
from tests.figure_hook import KernelFigureCheck

SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
#: "auto": XAI_DEVICE unset (the CPU on a machine without a GPU); "sim": the simulated GPU
DEVICES = ("auto", "sim")
CASES = [(folder, p.name, device) for device in DEVICES for p in SOLUTIONS for folder in ("solutions", "notebooks")]


def _case_id(folder: str, name: str, device: str) -> str:
    return f"{folder}/{name}" + ("" if device == "auto" else f"-{device}")


def _outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif "data" in out and "text/plain" in out["data"]:
                parts.append(out["data"]["text/plain"])
    return "\n".join(parts)


def smoke_env(monkeypatch: pytest.MonkeyPatch, data_dir: Path, strict: bool, device: str = "auto") -> None:
    """The environment a notebook's kernel inherits in the tests: smoke + offline, the fake CIFAR-10 in
    ``data_dir``, ``XAI_STRICT`` as ``strict``, a fixed hash seed, the kernel's inline backend and ``XAI_DEVICE``
    (``device``; ``"auto"`` leaves it unset)."""
    if device == "auto":
        monkeypatch.delenv("XAI_DEVICE", raising=False)
    else:
        monkeypatch.setenv("XAI_DEVICE", device)
    monkeypatch.setenv("XAI_SMOKE", "1")
    monkeypatch.setenv("XAI_OFFLINE", "1")
    monkeypatch.setenv("XAI_STRICT", "1" if strict else "0")
    monkeypatch.setenv("XAI_DATA_DIR", str(data_dir))
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend


def execute_notebook(nb, path: Path, key: str) -> None:
    """Execute ``nb`` (in place: outputs are added to its cells) top to bottom in a fresh Jupyter kernel started in
    ``path``'s folder; record its run time and slowest cell under ``key`` for the session's summary. Every figure
    the notebook shows is checked for overlapping or cut-off texts (``tests/figure_hook.py``): a problem fails."""
    cell_start: dict[int, float] = {}

    def on_start(cell, cell_index: int) -> None:  # noqa: ARG001
        cell_start[cell_index] = time.perf_counter()

    def on_done(cell, cell_index: int, execute_reply) -> None:  # noqa: ARG001
        seconds = time.perf_counter() - cell_start.get(cell_index, time.perf_counter())
        if seconds > SLOWEST_CELLS.get(key, (-1.0,))[0]:
            SLOWEST_CELLS[key] = (seconds, cell_index, cell.source.split("\n", 1)[0][:60])

    client = NotebookClient(
        nb, timeout=600, startup_timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}},
        on_cell_execute=on_start, on_cell_executed=on_done,
    )
    figure_check = KernelFigureCheck()
    client.extra_arguments = [*client.extra_arguments, *figure_check.kernel_arguments]
    start = time.perf_counter()
    client.execute()
    NOTEBOOK_TIMES[key] = time.perf_counter() - start
    figure_check.assert_clean(nb, key)


def keep_executed(nb, folder: str, name: str) -> None:
    """With ``XAI_EXECUTED_DIR`` set (``make test`` sets it), write the executed notebook to
    ``$XAI_EXECUTED_DIR/<folder>/<name>``: ``make site`` builds the course site from the student copies there."""
    target = os.environ.get("XAI_EXECUTED_DIR")
    if target:
        out = Path(target) / folder / name
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out)


@pytest.mark.notebook
@pytest.mark.parametrize(("folder", "name", "device"), CASES, ids=[_case_id(*c) for c in CASES])
def test_notebook_runs(folder: str, name: str, device: str, fake_data_dir: Path,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = ROOT / folder / name
    nb = nbformat.read(path, as_version=4)
    smoke_env(monkeypatch, fake_data_dir, strict=folder == "solutions", device=device)
    execute_notebook(nb, path, _case_id(folder, name, device))
    if device == "auto":  # the site shows the default (CPU) runs
        keep_executed(nb, folder, name)
    text = _outputs_text(nb)
    assert "RANDOM" in text, "offline mode must say that pretrained models use random weights"
    if device == "sim":
        assert "SIMULATED GPU" in text, "XAI_DEVICE=sim must say that the notebook runs on the simulated GPU"
    if folder == "solutions":
        assert "⏳ TODO" not in text, "a solution notebook left an exercise unsolved"
        assert "✅ PASS" in text or "TOSUBMIT" in "".join(c.source for c in nb.cells)
    else:
        fails = [line for line in text.splitlines() if line.startswith("❌ FAIL") and "demo:" not in line]
        assert not fails, f"an unsolved exercise must report 'not done', not fail: {fails}"
        n_exercises = sum(
            "### BEGIN SOLUTION" in c.source
            for c in nbformat.read(ROOT / "solutions" / name, 4).cells
            if c.cell_type == "code"
        )
        assert text.count("⏳ TODO") >= n_exercises, "every unsolved exercise's check must say 'not done yet'"
