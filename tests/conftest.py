"""Shared fixtures and helpers: a tiny CIFAR-10 in the real on-disk format, :func:`assert_no_hooks` (import it:
``from tests.conftest import assert_no_hooks``), and a report of notebook run times."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from torch import nn
from torch.nn.modules import module as _module

ROOT = Path(__file__).resolve().parent.parent
# The tools are scripts (``python tools/x.py``) that import each other as siblings (``from train_checkpoint import
# ...``), as their own folder is sys.path[0] when they run; the tests import them the same way. (helpers needs no
# path entry: it is installed, ``pip install -e .``.)
if str(ROOT / "tools") not in sys.path:
    sys.path.insert(0, str(ROOT / "tools"))
NOTEBOOK_TIMES: dict[str, float] = {}
#: notebook -> (seconds, cell index, first line) of its slowest cell, so a slow or stuck run names the cell
SLOWEST_CELLS: dict[str, tuple[float, int, str]] = {}


@pytest.fixture(scope="session")
def fake_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding a tiny CIFAR-10 (``cifar-10-batches-py``) that torchvision's loader reads."""
    from tests.fake_cifar import write_fake_cifar10

    root = tmp_path_factory.mktemp("xai_data")
    write_fake_cifar10(root)
    return root


#: the per-module hook dictionaries of ``nn.Module`` (``_backward_pre_hooks`` exists since torch 2.0)
HOOK_KINDS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def assert_no_hooks(model: nn.Module) -> None:
    """Fail if ``model`` or any submodule still holds a forward, forward-pre, backward or backward-pre hook, or if a
    global module hook (``nn.modules.module.register_module_forward_hook`` and friends) is left behind. The message
    names the module (its dotted name, ``<root>`` for ``model`` itself), its type and the kind of hook."""
    left = [
        f"module {name or '<root>'!r} ({type(m).__name__}): {len(getattr(m, kind))} {kind.strip('_')[:-1]}"
        for name, m in model.named_modules()
        for kind in HOOK_KINDS
        if getattr(m, kind, None)
    ]
    left += [f"global {kind.strip('_')[:-1]}: {len(getattr(_module, '_global' + kind))}"
             for kind in HOOK_KINDS if getattr(_module, "_global" + kind, None)]
    assert not left, "hooks left behind: " + "; ".join(left)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not NOTEBOOK_TIMES:
        return
    terminalreporter.section("notebook smoke-run times (XAI_SMOKE=1 XAI_OFFLINE=1)")
    for name, seconds in sorted(NOTEBOOK_TIMES.items()):
        slow = SLOWEST_CELLS.get(name)
        detail = f"   (slowest: cell {slow[1]}, {slow[0]:.1f} s, {slow[2]!r})" if slow else ""
        terminalreporter.write_line(f"{seconds:7.1f} s  {name}{detail}")
    terminalreporter.write_line(f"{sum(NOTEBOOK_TIMES.values()):7.1f} s  total")
