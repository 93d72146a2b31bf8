"""The figure check in the tests' notebook runs: every figure a notebook's kernel renders is checked by
``helpers/figure_check.py`` (no two texts overlap, none is cut off by the figure's edge).

Use (``tests/test_notebooks.py`` ``execute_notebook``)::

    check = KernelFigureCheck()
    client = NotebookClient(nb, ..., extra_arguments=check.kernel_arguments)
    client.execute()
    check.assert_clean(nb, "solutions/05_lime.ipynb")   # fails naming the notebook, the cell and the two texts

The kernel loads the module by its path at start-up (``IPKernelApp.exec_files``), without importing the ``helpers``
package, so a notebook that runs another copy of the course (the student release) still imports its own helpers.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from tests.conftest import ROOT

MODULE = ROOT / "helpers" / "figure_check.py"

_STARTUP = """\
import importlib.util as _xai_u
import sys as _xai_sys
_xai_s = _xai_u.spec_from_file_location("_xai_figure_check", {module!r})
_xai_m = _xai_sys.modules["_xai_figure_check"] = _xai_u.module_from_spec(_xai_s)
_xai_s.loader.exec_module(_xai_m)
_xai_m.install({log!r})
del _xai_u, _xai_sys, _xai_s, _xai_m
"""


class KernelFigureCheck:
    """A log file and the kernel arguments that make a kernel check every figure it renders into it."""

    def __init__(self) -> None:
        folder = Path(tempfile.mkdtemp(prefix="xai-figure-check-"))
        self.log = folder / "figures.jsonl"
        startup = folder / "startup.py"
        startup.write_text(_STARTUP.format(module=str(MODULE), log=str(self.log)), encoding="utf-8")
        self.kernel_arguments = [f"--IPKernelApp.exec_files={startup}"]

    def problems(self, nb) -> list[str]:
        """``"cell i: problem"`` for every problem logged, ``i`` the index in ``nb.cells`` (executed in place)."""
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            where = self._cell_index(nb, entry)
            figure = f" (figure {entry['figure']!r})" if entry.get("figure") else ""
            for problem in entry["problems"]:
                out.append(f"cell {where if where is not None else '?'}{figure}: {problem}")
        return out

    @staticmethod
    def _cell_index(nb, entry: dict) -> int | None:
        """The cell the entry came from: the code cell with its source (the one run with its execution count,
        where several have that source)."""
        same = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source == entry.get("source")]
        count = entry.get("execution_count")
        near = [i for i in same if count is not None and nb.cells[i].get("execution_count") in (count, count - 1)]
        return (near or same or [None])[0]

    def checked(self) -> int:
        """How many figures the kernel checked."""
        return len(self.log.read_text(encoding="utf-8").splitlines()) if self.log.exists() else 0

    def assert_clean(self, nb, key: str) -> None:
        """Fail when a figure of the run had a layout problem: names ``key`` (the notebook), the cell, the texts;
        also when the notebook shows figures and none was checked (the hook did not run)."""
        shown = sum("image/png" in out.get("data", {}) for c in nb.cells for out in c.get("outputs", []))
        assert not shown or self.checked(), f"{key}: {shown} figures shown, none checked: the figure hook did not run"
        found = self.problems(nb)
        assert not found, f"{key}: {len(found)} figure layout problem(s):\n" + "\n".join(found)
