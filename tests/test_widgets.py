"""The notebooks' widget code works with ipywidgets 7.7 (Colab preinstalls 7.7.1) and with ipywidgets 8.

For each version, ipywidgets is installed once with ``pip install --target`` into a cache folder
(``$XAI_TEST_CACHE``, default ``~/.cache/xai-course/test-envs``) and put first on ``sys.path`` of a fresh Python. The
widget code is taken from the solution notebooks themselves (the ``try: import ipywidgets`` block and the
``if widgets is None: ... else: ...`` block of the cell that builds the controls), run with a recorder in place of
the drawing function, and a control is moved: the recorder must be called with the new value. The test is skipped
only when the package registry cannot be reached.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.conftest import ROOT

#: Colab's preinstalled version, and the current 8.x that pip installs elsewhere
WIDGET_VERSIONS = {"7.7.1": ["ipywidgets==7.7.1", "ipython_genutils==0.2.0"], "8.1.9": ["ipywidgets==8.1.9"]}
_NETWORK_ERRORS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "ConnectTimeout",
    "Read timed out",
    "ProxyError",
)

#: notebook -> (the drawing function the widget callback calls, names the cell needs, how to move a control and
#: what the recorder must then have seen)
CASES = {
    "02_attention.ipynb": (
        "explore",
        {"DL": 4, "DH": 3, "PHOTOS": ["cat", "dog"]},
        "ns['controls']['discard'].value = 0.3\nns['controls']['block'].value = 1\n"
        "assert calls[-2:] == [((), {'block': 3, 'head': -1, 'fusion': 'mean', 'discard': 0.3, 'photo': 0}),"
        " ((), {'block': 1, 'head': -1, 'fusion': 'mean', 'discard': 0.3, 'photo': 0})], calls",
    ),
    "04_gradcam.ipynb": (
        "show_segmentation",
        {},
        "before = len(calls)\nns['slider'].value = 0.7\nassert calls[before:] == [((0.7,), {})], calls",
    ),
}

DRIVER = """
import ast, json, sys, types
target, expected, spec = sys.argv[1], sys.argv[2], json.loads(sys.stdin.read())
sys.path.insert(0, target)
import ipywidgets
assert ipywidgets.__version__ == expected, (ipywidgets.__version__, ipywidgets.__file__)
calls = []
ns = dict(spec["stubs"], attention=types.SimpleNamespace(HEAD_FUSIONS=("mean", "min", "max")))
ns[spec["draw"]] = lambda *a, **kw: calls.append((a, kw))
exec(compile(spec["code"], spec["name"], "exec"), ns)
assert ns["widgets"] is not None, "the notebook did not find ipywidgets"
exec(spec["move"])
print("OK", ipywidgets.__version__, len(calls))
"""


def _cache_root() -> Path:
    return Path(os.environ.get("XAI_TEST_CACHE", Path.home() / ".cache" / "xai-course" / "test-envs"))


def _widgets_target(version: str) -> Path:
    """A folder holding ipywidgets ``version`` (pip --target, cached); skips when the registry is unreachable."""
    target = _cache_root() / f"ipywidgets-{version}"
    if (target / ".complete").exists():
        return target
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp), *WIDGET_VERSIONS[version]]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        if any(e in r.stdout + r.stderr for e in _NETWORK_ERRORS):
            pytest.skip(f"the package registry is unreachable, cannot install ipywidgets {version}")
        raise AssertionError(f"pip could not install ipywidgets {version}:\n{r.stderr[-2000:]}")
    (tmp / ".complete").write_text(" ".join(WIDGET_VERSIONS[version]) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def widget_code(path: Path) -> str:
    """The widget part of a notebook: its ``try`` block importing ipywidgets and its ``if widgets is None`` block."""
    nb = nbformat.read(path, as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code" and "widgets.Output()" in c.source]
    if len(cells) != 1:
        raise AssertionError(f"{path.name}: expected one cell building an ipywidgets Output, found {len(cells)}")
    tree = ast.parse(cells[0])
    keep = [
        node
        for node in tree.body
        if (isinstance(node, ast.Try) and "ipywidgets" in ast.unparse(node))
        or (isinstance(node, ast.If) and "widgets is None" in ast.unparse(node.test))
    ]
    if len(keep) != 2:
        raise AssertionError(f"{path.name}: the widget cell no longer has the try-import / if-widgets blocks")
    return ast.unparse(ast.Module(body=keep, type_ignores=[]))


def test_widget_code_is_found_and_fails_on_a_wrong_value(tmp_path: Path) -> None:
    """The extraction finds the blocks, and the driver's assertion can fail (here: a value never set)."""
    code = widget_code(ROOT / "solutions" / "04_gradcam.ipynb")
    assert "FloatSlider" in code and "observe" in code
    spec = {"name": "04", "code": code, "stubs": {}, "draw": "show_segmentation",
            "move": "ns['slider'].value = 0.7\nassert calls[-1] == ((0.3,), {}), calls"}
    r = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path), _installed_widgets_version()],
                       input=json.dumps(spec), capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "AssertionError" in r.stderr


def _installed_widgets_version() -> str:
    import ipywidgets

    return ipywidgets.__version__


@pytest.mark.parametrize("version", list(WIDGET_VERSIONS))
@pytest.mark.parametrize("name", list(CASES))
def test_notebook_widgets_work_with(version: str, name: str) -> None:
    target = _widgets_target(version)
    draw, stubs, move = CASES[name]
    spec = {"name": name, "code": widget_code(ROOT / "solutions" / name), "stubs": stubs, "draw": draw, "move": move}
    r = subprocess.run([sys.executable, "-c", DRIVER, str(target), version], input=json.dumps(spec),
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1].startswith(f"OK {version}")
