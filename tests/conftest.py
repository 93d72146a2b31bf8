"""Shared fixtures: a tiny CIFAR-10 in the real on-disk format, and a report of notebook run times."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
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


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    if not NOTEBOOK_TIMES:
        return
    terminalreporter.section("notebook smoke-run times (XAI_SMOKE=1 XAI_OFFLINE=1)")
    for name, seconds in sorted(NOTEBOOK_TIMES.items()):
        slow = SLOWEST_CELLS.get(name)
        detail = f"   (slowest: cell {slow[1]}, {slow[0]:.1f} s, {slow[2]!r})" if slow else ""
        terminalreporter.write_line(f"{seconds:7.1f} s  {name}{detail}")
    terminalreporter.write_line(f"{sum(NOTEBOOK_TIMES.values()):7.1f} s  total")
