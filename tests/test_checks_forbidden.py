"""Exercise checks 0.1 (softmax) and 1.2 (attention) reject library shortcuts, accept the notebooks' own
solutions, and restore the patched library functions afterwards (also after an error)."""

from __future__ import annotations

import ast
import math

import nbformat
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import checks
from tests.conftest import ROOT


def _solution_function(notebook: str, name: str):
    """The function ``name`` as defined in the solution notebook (its code cell executed on its own)."""
    for cell in nbformat.read(ROOT / "solutions" / notebook, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse(cell.source)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == name:
                namespace = {"torch": torch, "F": F, "math": math, "nn": nn}
                exec(compile(ast.Module([node], []), notebook, "exec"), namespace)  # noqa: S102
                return namespace[name]
    raise LookupError(f"{name} not found in {notebook}")


# the logits of notebook 00's check
LOGITS = torch.tensor([[1.0, 2.0, 3.0], [1000.0, 1001.0, 1002.0], [-5.0, 0.0, 5.0], [-1000.0, 0.0, 1000.0]])


def _check_softmax(fn) -> checks.CheckResult:
    return checks.check_close(
        "0.1 softmax",
        fn,
        lambda z: torch.softmax(z, dim=-1),
        args=(LOGITS,),
        atol=1e-6,
        strict=False,
        forbid=checks.FORBID_SOFTMAX,
    )


def _check_attention(fn) -> checks.CheckResult:
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 9, 8, generator=gen) for _ in range(3))
    return checks.check_close(
        "1.2 attention",
        fn,
        F.scaled_dot_product_attention,
        args=(q, k, v),
        atol=1e-5,
        strict=False,
        forbid=checks.FORBID_ATTENTION,
    )


def test_softmax_check_passes_the_solution() -> None:
    assert _check_softmax(_solution_function("00_getting_started.ipynb", "softmax")).passed


from torch.nn.functional import softmax as imported_softmax  # noqa: E402 - an alias patching cannot reach

swallowed: list[str] = []


def _swallowing(z):
    try:
        return F.softmax(z, -1)
    except Exception:  # noqa: BLE001
        swallowed.append("caught")
        e = (z - z.max(-1, keepdim=True).values).exp()
        return e / e.sum(-1, keepdim=True)


@pytest.mark.parametrize(
    "wrong",
    [
        lambda z: F.softmax(z, dim=-1),
        lambda z: torch.softmax(z, -1),
        lambda z: z.softmax(-1),
        lambda z: nn.Softmax(dim=-1)(z),
        lambda z: F.log_softmax(z, -1).exp(),
        lambda z: torch.special.softmax(z, -1),
        lambda z: imported_softmax(z, -1),
        _swallowing,
    ],
    ids=["F.softmax", "torch.softmax", "Tensor.softmax", "nn.Softmax", "log_softmax", "special", "alias", "caught"],
)
def test_softmax_check_rejects_library_shortcuts(wrong, capsys) -> None:
    result = _check_softmax(wrong)
    assert result.status == "failed"
    assert "asks you not to use" in result.message and "Hint" in result.message
    assert torch.allclose(torch.softmax(LOGITS, -1), F.softmax(LOGITS, -1))  # restored


def test_softmax_check_without_the_max_trick_still_fails_on_values() -> None:
    result = _check_softmax(lambda z: z.exp() / z.exp().sum(-1, keepdim=True))
    assert result.status == "failed" and "NaN" in result.message


def _shifted_softmax(shift):
    def softmax(z):
        e = (z - shift(z)).exp()
        return e / e.sum(-1, keepdim=True)

    return softmax


@pytest.mark.parametrize(
    "shift",
    [lambda z: z.mean(-1, keepdim=True), lambda z: z.min(-1, keepdim=True).values, lambda z: z.max()],
    ids=["row mean", "row min", "max of the whole batch"],
)
def test_softmax_check_rejects_a_shift_other_than_the_row_max(shift) -> None:
    """Shifting by the mean or the min passes rows whose logits are close together; the wide row catches it."""
    result = _check_softmax(_shifted_softmax(shift))
    assert result.status == "failed" and "NaN" in result.message


def test_attention_check_passes_the_solution() -> None:
    assert _check_attention(_solution_function("01_vit_cifar10.ipynb", "attention")).passed


@pytest.mark.parametrize(
    "wrong",
    [
        F.scaled_dot_product_attention,
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
        lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=None),
    ],
    ids=["passed directly", "lambda", "dotted"],
)
def test_attention_check_rejects_the_fused_kernel(wrong) -> None:
    result = _check_attention(wrong)
    assert result.status == "failed" and "scaled_dot_product_attention" in result.message


def test_forbidden_restores_everything_after_an_error() -> None:
    originals = (torch.softmax, F.softmax, F.scaled_dot_product_attention)
    had_own = "softmax" in torch.Tensor.__dict__
    with pytest.raises(checks.ForbiddenCall, match="write it yourself"):
        with checks.forbidden(checks.FORBID_SOFTMAX + checks.FORBID_ATTENTION) as used:
            torch.ones(3).softmax(0)
    assert used == ["torch.Tensor.softmax"]
    assert (torch.softmax, F.softmax, F.scaled_dot_product_attention) == originals
    assert ("softmax" in torch.Tensor.__dict__) == had_own
    assert torch.allclose(torch.ones(2).softmax(0), torch.full((2,), 0.5))
    with pytest.raises(ValueError, match="dotted path"):
        with checks.forbidden(["softmax"]):
            pass
