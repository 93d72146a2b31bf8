"""Every exercise check of notebook 07 rejects a known wrong solution (issue #35), with the machinery of
``tests/test_wrong_solutions.py``: each exercise body is replaced by a typical student mistake (it runs and returns
the right shape), the notebook runs once in smoke + offline mode with ``XAI_STRICT=0``, and every check of an
exercise must print ``❌ FAIL`` for a wrong result (not for an error the wrong code raised), none ``✅ PASS``.

Exercise 7.2 calls ``evaluation.randomize_parameters``, which re-initialises each module with its own init: the
wrong cascade below uses it correctly but in the wrong order, so only the loop is wrong.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import test_wrong_solutions as base

NAME = "07_evaluating_explanations"

#: exercise function -> (exercise number its checks are named with, wrong body)
WRONG_07: dict[str, tuple[str, str]] = {
    # rows and columns mixed up: the mask is read transposed at the map's maximum
    "my_pointing_game": ("7.1", """
        top = maps.flatten(1).argmax(1)
        return masks.transpose(1, 2).flatten(1).gather(1, top[:, None])[:, 0]
    """),
    # the groups randomised bottom-up (layer_groups not reversed); the model is restored correctly
    "my_cascading": ("7.2", """
        saved = copy.deepcopy(model.state_dict())
        gen = torch.Generator().manual_seed(seed)
        maps = [explain(model, x, target).detach()]
        try:
            for _, params in evaluation.layer_groups(model):
                evaluation.randomize_parameters(params, gen)
                maps.append(explain(model, x, target).detach())
        finally:
            model.load_state_dict(saved)
        return torch.stack(maps)
    """),
    # the logit of the target recorded instead of its softmax probability
    "my_deletion_curve": ("7.3", """
        b, _, h, w = x.shape
        order = torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)
        scores = []
        with torch.no_grad():
            for k in range(steps + 1):
                removed = torch.zeros(b, h * w, dtype=torch.bool, device=x.device)
                removed.scatter_(1, order[:, :round(k * h * w / steps)], True)
                xk = torch.where(removed.view(b, 1, h, w), substrate, x)
                scores.append(model(xk).gather(1, target[:, None])[:, 0].cpu())
        return torch.stack(scores, 1)
    """),
    # the fill cast to uint8 without rounding (the CIFAR-10 mean 125.3, 123.0, 113.9 becomes 125, 122, 113)
    "my_roar_remove": ("7.4", """
        b, c, h, w = images.shape
        top = torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)[:, :round(fraction * h * w)]
        removed = torch.zeros(b, h * w, dtype=torch.bool).scatter_(1, top, True).view(b, 1, h, w)
        value = torch.as_tensor(fill, dtype=torch.float32).view(1, c, 1, 1)
        return torch.where(removed, value.to(images.dtype), images)
    """),
}


@pytest.mark.notebook
def test_each_check_of_07_rejects_a_known_wrong_solution(fake_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base.WRONG, NAME, WRONG_07)
    base.test_each_check_rejects_a_known_wrong_solution(NAME, fake_data_dir, monkeypatch)
