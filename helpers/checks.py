"""Exercise checks: compare a student's function with a reference and say pass / fail (with a hint) / not done.

Every exercise ends with one call, e.g.::

    checks.check_close("3.1 saliency", saliency, reference.saliency, args=(model, x, 3), atol=1e-6)

* not done: the student's function still raises ``NotImplementedError``;
* failed: it raised another error, or its output differs from the reference (shape, dtype or values);
* passed: it matches within the tolerance.

The result is printed and returned. With ``XAI_STRICT=1`` (used when CI runs the solution notebooks) a failed or
unfinished check raises :class:`CheckFailed`, so a broken solution cannot go unnoticed.
"""

from __future__ import annotations

import copy
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import env
from .hints import hint_for

__all__ = ["CheckFailed", "CheckResult", "check", "check_close", "assert_close"]

_SYMBOL = {"passed": "✅ PASS", "failed": "❌ FAIL", "not done": "⏳ TODO"}


class CheckFailed(AssertionError):
    """Raised by a check in strict mode (``XAI_STRICT=1``) when it fails or the exercise is not done."""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: ``status`` is ``"passed"``, ``"failed"`` or ``"not done"``."""

    name: str
    status: str
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:  # short, because a check is often the last line of a notebook cell
        return f"<check {self.name!r}: {self.status}>"


def check(
    name: str, test: Callable[[], str | None], hint: str | None = None, strict: bool | None = None
) -> CheckResult:
    """Run ``test()`` and report. ``test`` raises ``AssertionError`` (a mismatch) or ``NotImplementedError`` (not
    done), or returns an optional detail string on success. A failure prints ``hint``; without one, the hint
    registered in :mod:`helpers.hints` for the exercise number that starts ``name`` (``hint=""``: none).
    ``strict`` overrides ``XAI_STRICT`` (e.g. ``False`` to demonstrate a failing check)."""
    if hint is None:
        hint = hint_for(name)
    try:
        detail = test()
    except NotImplementedError:
        result = CheckResult(
            name, "not done", "not done yet: fill in the function above, run its cell, then re-run this one."
        )
    except AssertionError as exc:
        result = CheckResult(name, "failed", str(exc) + (f"\n   Hint: {hint}" if hint else ""))
    except Exception as exc:  # noqa: BLE001 - a student's code may raise anything
        where = traceback.extract_tb(exc.__traceback__)[-1]
        result = CheckResult(
            name,
            "failed",
            f"your code raised {type(exc).__name__}: {exc} "
            f"(line {where.lineno} of {where.name})" + (f"\n   Hint: {hint}" if hint else ""),
        )
    else:
        result = CheckResult(name, "passed", detail or "")
    line = f"{_SYMBOL[result.status]}  {name}"
    print(line + (f": {result.message}" if result.message else ""))
    if (env.strict() if strict is None else strict) and not result.passed:
        raise CheckFailed(f"{name}: {result.status}: {result.message}")
    return result


def _to_numpy(x: Any):
    import numpy as np
    import torch

    if isinstance(x, torch.Tensor):
        return (
            x.detach().float().cpu().numpy()
            if x.is_floating_point() or x.dtype == torch.bfloat16
            else x.detach().cpu().numpy()
        )
    return np.asarray(x)


def assert_close(actual: Any, expected: Any, atol: float = 1e-5, rtol: float = 1e-4, what: str = "output") -> float:
    """Assert that ``actual`` matches ``expected`` (tensors, arrays, numbers, or tuples/lists of them).

    Checks type family, shape and values (``|a - e| <= atol + rtol * |e|``); raises ``AssertionError`` with a
    message a student can act on. Returns the largest absolute difference.
    """
    import numpy as np

    if isinstance(expected, (tuple, list)):
        if not isinstance(actual, (tuple, list)) or len(actual) != len(expected):
            raise AssertionError(f"{what}: expected a sequence of {len(expected)} items, got {type(actual).__name__}")
        return max(
            (
                assert_close(a, e, atol, rtol, f"{what}[{i}]")
                for i, (a, e) in enumerate(zip(actual, expected, strict=True))
            ),
            default=0.0,
        )
    if actual is None:
        raise AssertionError(f"{what}: your function returned None -- did you forget `return`?")
    a, e = _to_numpy(actual), _to_numpy(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{what}: shape {tuple(a.shape)} but expected {tuple(e.shape)}")
    if a.dtype == bool or e.dtype == bool:
        bad = int((a != e).sum())
        if bad:
            raise AssertionError(f"{what}: {bad} of {a.size} entries differ")
        return 0.0
    if not np.all(np.isfinite(a)):
        raise AssertionError(f"{what}: contains NaN or inf")
    diff = np.abs(a.astype(np.float64) - e.astype(np.float64))
    tol = atol + rtol * np.abs(e.astype(np.float64))
    if np.any(diff > tol):
        worst = np.unravel_index(np.argmax(diff - tol), diff.shape)
        raise AssertionError(
            f"{what}: values differ (max |diff| = {diff.max():.3g} at index {tuple(int(i) for i in worst)}, "
            f"tolerance {atol:g} + {rtol:g}*|expected|)"
        )
    return float(diff.max()) if diff.size else 0.0


def check_close(
    name: str,
    student_fn: Callable[..., Any],
    reference_fn: Callable[..., Any],
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    hint: str | None = None,
    transform: Callable[[Any], Any] | None = None,
    strict: bool | None = None,
) -> CheckResult:
    """Call ``student_fn(*args, **kwargs)`` and ``reference_fn(*args, **kwargs)`` on separate copies of the inputs
    and compare the outputs with :func:`assert_close`. ``transform`` (e.g. a normalisation) is applied to both
    outputs first. The reference runs first, so an error there is a course bug and is raised as such. ``hint`` as in
    :func:`check`."""
    kwargs = kwargs or {}
    expected = reference_fn(*_copy(args), **_copy(kwargs))
    if transform is not None:
        expected = transform(expected)

    def test() -> str:
        actual = student_fn(*_copy(args), **_copy(kwargs))
        if transform is not None:
            actual = transform(actual)
        diff = assert_close(actual, expected, atol, rtol)
        return f"matches the reference (max |diff| = {diff:.2g})"

    return check(name, test, hint, strict)


def _copy(obj: Any) -> Any:
    """Copy tensors and containers of them (not modules), so a student's in-place edit cannot leak."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().clone().requires_grad_(obj.requires_grad) if obj.is_leaf else obj.detach().clone()
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copy(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _copy(v) for k, v in obj.items()}
    if isinstance(obj, (int, float, str, bool, type(None))):
        return obj
    try:
        import numpy as np

        if isinstance(obj, np.ndarray):
            return obj.copy()
    except ImportError:  # pragma: no cover
        pass
    return obj if callable(obj) or hasattr(obj, "parameters") else copy.copy(obj)
