"""Every exercise check of notebook 10 rejects known wrong solutions (the machinery of tests/test_wrong_solutions.py).

Two sets of typical mistakes, one notebook run each (smoke + offline, ``XAI_STRICT=0``): every check of an exercise
must print ``❌ FAIL`` for the wrong result, none ``✅ PASS``, and the wrong code must not raise.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import test_wrong_solutions as base

NAME = "10_inside_the_vit"

VARIANTS: dict[str, dict[str, tuple[str, str]]] = {
    "A": {
        # the head applied to the raw stream: the final LayerNorm forgotten
        "my_logit_lens": ("10.1", """
            return model.head(stream[:, :, 0, :])
        """),
        # the part not centred over its features
        "my_direct_logit": ("10.2", """
            target = torch.as_tensor(target, device=part.device).long().expand(part.shape[0])
            sigma = torch.sqrt(final.var(dim=-1, unbiased=False, keepdim=True) + model.norm.eps)
            return (part / sigma * model.norm.weight * model.head.weight[target]).sum(-1)
        """),
        # the direction swapped: the target's activation patched into the source run
        "my_patch": ("10.3", """
            _, target_cache = inside.run_with_cache(model, target_input)
            logits, _ = inside.run_with_cache(model, source, {site: inside.Patch(target_cache[site], tokens)})
            return logits
        """),
        # b_pre not subtracted before the encoder
        "my_topk_sae": ("10.4", """
            pre = x @ W_enc.T + b_enc
            values, indices = pre.topk(k, dim=-1)
            z = torch.zeros_like(pre).scatter(-1, indices, values.relu())
            x_hat = z @ W_dec.T + b_pre
            return x_hat, z, ((x - x_hat) ** 2).mean()
        """),
    },
    "B": {
        # the mean over all tokens read out instead of the CLS token
        "my_logit_lens": ("10.1", """
            return model.head(model.norm(stream.mean(dim=2)))
        """),
        # each part divided by its own standard deviation (the scale not frozen at the whole state's)
        "my_direct_logit": ("10.2", """
            target = torch.as_tensor(target, device=part.device).long().expand(part.shape[0])
            sigma = torch.sqrt(part.var(dim=-1, unbiased=False, keepdim=True) + model.norm.eps)
            normed = (part - part.mean(dim=-1, keepdim=True)) / sigma * model.norm.weight
            return (normed * model.head.weight[target]).sum(-1)
        """),
        # the patch taken from the target's own run: nothing changes
        "my_patch": ("10.3", """
            _, cache = inside.run_with_cache(model, target_input)
            logits, _ = inside.run_with_cache(model, target_input, {site: inside.Patch(cache[site], tokens)})
            return logits
        """),
        # the k largest absolute pre-activations kept, and the loss summed over features
        "my_topk_sae": ("10.4", """
            pre = (x - b_pre) @ W_enc.T + b_enc
            indices = pre.abs().topk(k, dim=-1).indices
            z = torch.zeros_like(pre).scatter(-1, indices, pre.gather(-1, indices).relu())
            x_hat = z @ W_dec.T + b_pre
            return x_hat, z, ((x - x_hat) ** 2).sum(-1).mean()
        """),
    },
}


@pytest.mark.notebook
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_check_rejects_known_wrong_solutions(variant: str, fake_data_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base.WRONG, NAME, VARIANTS[variant])
    base.test_each_check_rejects_a_known_wrong_solution(NAME, fake_data_dir, monkeypatch)
