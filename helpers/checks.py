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

import contextlib
import copy
import importlib
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from . import env
from .hints import hint_for

__all__ = [
    "FORBID_ATTENTION",
    "FORBID_SOFTMAX",
    "CheckFailed",
    "CheckResult",
    "ForbiddenCall",
    "assert_close",
    "check",
    "check_close",
    "forbidden",
]

_SYMBOL = {"passed": "✅ PASS", "failed": "❌ FAIL", "not done": "⏳ TODO"}


class CheckFailed(AssertionError):
    """Raised by a check in strict mode (``XAI_STRICT=1``) when it fails or the exercise is not done."""


class ForbiddenCall(AssertionError):
    """Raised when a student's function calls a library function the exercise asks them to write themselves."""


# The library shortcuts of exercises 0.1 (softmax) and 1.2 (attention), as dotted paths ``module.attr`` or
# ``module.Class.attr``. ``nn.Softmax`` and ``nn.MultiheadAttention`` call the functional versions, so they are
# caught too.
FORBID_SOFTMAX: tuple[str, ...] = (
    "torch.softmax",
    "torch.log_softmax",
    "torch.special.softmax",
    "torch.special.log_softmax",
    "torch.nn.functional.softmax",
    "torch.nn.functional.log_softmax",
    "torch.nn.functional.softmin",
    "torch.nn.functional.gumbel_softmax",
    "torch.Tensor.softmax",
    "torch.Tensor.log_softmax",
)
FORBID_ATTENTION: tuple[str, ...] = (
    "torch.nn.functional.scaled_dot_product_attention",
    "torch.nn.functional.multi_head_attention_forward",
)


def _resolve(dotted: str) -> tuple[Any, str]:
    """``"torch.nn.functional.softmax"`` -> (the object holding the attribute, ``"softmax"``)."""
    owner_path, _, attr = dotted.rpartition(".")
    if not owner_path:
        raise ValueError(f"forbidden: {dotted!r} is not a dotted path such as 'torch.softmax'")
    parts = owner_path.split(".")
    for i in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
        try:
            owner = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            owner = getattr(owner, part)
        return owner, attr
    raise ValueError(f"forbidden: cannot import any prefix of {dotted!r}")


def _forbidden_message(dotted: str, why: str) -> str:
    return f"your function calls `{dotted}`, which this exercise asks you not to use: {why}"


def _forbidden_alias(fn: Callable[..., Any], names: Sequence[str]) -> str | None:
    """The first name in ``names`` whose function ``fn`` reaches under another name (``from torch import softmax``,
    ``sm = F.softmax`` in the notebook, a closure), which patching the library cannot catch; else ``None``."""
    originals = {}
    for dotted in names:
        owner, attr = _resolve(dotted)
        if hasattr(owner, attr):
            originals[id(getattr(owner, attr))] = dotted
    if not originals:
        return None
    if id(fn) in originals:  # e.g. ``attention = F.scaled_dot_product_attention``
        return originals[id(fn)]
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    globals_ = getattr(fn, "__globals__", {})
    stack, referenced = [code], []
    while stack:  # the function's code and the code of functions defined inside it
        c = stack.pop()
        referenced += [globals_.get(n) for n in c.co_names]
        stack += [k for k in c.co_consts if hasattr(k, "co_names")]
    referenced += [cell.cell_contents for cell in (getattr(fn, "__closure__", None) or ()) if _filled(cell)]
    return next((originals[id(obj)] for obj in referenced if obj is not None and id(obj) in originals), None)


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - raises ValueError for an empty cell
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def forbidden(names: Sequence[str], why: str = "write it yourself") -> Iterator[list[str]]:
    """While the block runs, every function in ``names`` (dotted paths, e.g. :data:`FORBID_SOFTMAX`) raises
    :class:`ForbiddenCall` with a clear message instead of running. Yields the list of the names that were called
    (so a call swallowed by a student's ``try``/``except`` is still seen). Everything is restored on exit, also
    after an exception. Names missing from the installed torch are skipped."""
    used: list[str] = []
    patched: list[tuple[Any, str, Any, bool]] = []  # (owner, attr, original, owner defined attr itself)

    def blocker(dotted: str) -> Callable[..., Any]:
        def blocked(*args: Any, **kwargs: Any) -> Any:
            used.append(dotted)
            raise ForbiddenCall(_forbidden_message(dotted, why))

        return blocked

    try:
        for dotted in names:
            owner, attr = _resolve(dotted)
            if not hasattr(owner, attr):
                continue
            own = attr in getattr(owner, "__dict__", {})
            patched.append((owner, attr, getattr(owner, attr) if not own else owner.__dict__[attr], own))
            setattr(owner, attr, blocker(dotted))
        yield used
    finally:
        for owner, attr, original, own in reversed(patched):
            if own:
                setattr(owner, attr, original)
            else:  # inherited (e.g. Tensor.softmax from TensorBase): remove our override
                delattr(owner, attr)


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

    Checks type family (a boolean result must be boolean: a 0/1 float mask fails, and vice versa), shape and values
    (``|a - e| <= atol + rtol * |e|``); raises ``AssertionError`` with a message a student can act on. Returns the
    largest absolute difference.
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
    if (a.dtype == bool) != (e.dtype == bool):  # a 0/1 float or int mask is not a boolean mask, and vice versa
        raise AssertionError(f"{what}: dtype {a.dtype} but expected {e.dtype}")
    if a.dtype == bool:
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
    forbid: Sequence[str] = (),
    forbid_why: str = "write it yourself",
) -> CheckResult:
    """Call ``student_fn(*args, **kwargs)`` and ``reference_fn(*args, **kwargs)`` on separate copies of the inputs
    and compare the outputs with :func:`assert_close`. ``transform`` (e.g. a normalisation) is applied to both
    outputs first. The reference runs first, so an error there is a course bug and is raised as such. ``hint`` as in
    :func:`check`. ``forbid``: dotted names of library functions the student's function must not call (see
    :func:`forbidden`); calling one fails the check with ``forbid_why`` (the reference may use them)."""
    kwargs = kwargs or {}
    expected = reference_fn(*_copy(args), **_copy(kwargs))
    if transform is not None:
        expected = transform(expected)

    def test() -> str:
        call_args, call_kwargs = _copy(args), _copy(kwargs)
        alias = _forbidden_alias(student_fn, forbid)
        if alias:
            raise ForbiddenCall(_forbidden_message(alias, forbid_why))
        with forbidden(forbid, forbid_why) as used:
            try:
                actual = student_fn(*call_args, **call_kwargs)
            except Exception:
                if used:  # also when the student's code caught our error and then failed otherwise
                    raise ForbiddenCall(_forbidden_message(used[0], forbid_why)) from None
                raise
        if used:  # the student's code caught our error and carried on
            raise ForbiddenCall(_forbidden_message(used[0], forbid_why))
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
