"""Every exercise check of notebooks 00-04 rejects a known wrong solution (issue #25).

For each notebook, the body between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` of every exercise function is
replaced by a plausible wrong implementation (a typical student mistake, not garbage: each one runs and returns the
right shape), and the notebook is executed once, as in ``tests/test_notebooks.py`` (smoke + offline) but with
``XAI_STRICT=0``, so a failed check prints and the notebook carries on (cells after an exercise use the reference
implementation). Every check of an exercise cell must then print ``❌ FAIL`` for a wrong *result* (not for an error
raised by the wrong code, which would prove nothing), and none may print ``✅ PASS``.

A wrong body never calls another student function of the same cell (1.1b does not use 1.1a's ``patchify``), so each
check is tested against its own mistake only.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import nbformat
import pytest

from tests.conftest import ROOT
from tests.test_notebooks import execute_notebook, smoke_env

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
SYMBOLS = ("✅ PASS", "❌ FAIL", "⏳ TODO")

#: notebook -> exercise function -> (exercise number its checks are named with, wrong body)
WRONG: dict[str, dict[str, tuple[str, str]]] = {
    "00_getting_started": {
        # shifted by the row minimum instead of the maximum: exp overflows on a row spread wider than ~88
        "softmax": ("0.1", """
            exp = (logits - logits.min(dim=-1, keepdim=True).values).exp()
            return exp / exp.sum(dim=-1, keepdim=True)
        """),
    },
    "01_vit_cifar10": {
        # each patch flattened channel-last, (p, p, C), instead of (C, p, p)
        "patchify": ("1.1a", """
            b, c, h, w = x.shape
            p = patch_size
            x = x.permute(0, 2, 3, 1).reshape(b, h // p, p, w // p, p, c)  # (B, gh, p, gw, p, C)
            return x.permute(0, 1, 3, 2, 4, 5).reshape(b, (h // p) * (w // p), p * p * c)
        """),
        # the bias forgotten (patches extracted correctly, without the student's patchify)
        "patch_embed": ("1.1b", """
            patches = F.unfold(x, kernel_size=patch_size, stride=patch_size).transpose(1, 2)  # (B, N, C*p*p)
            return patches @ weight.T
        """),
        # scores scaled by 1/d instead of 1/sqrt(d)
        "attention": ("1.2", """
            scores = q @ k.transpose(-2, -1) / q.shape[-1]
            return scores.softmax(dim=-1) @ v
        """),
        # heads split by reshaping (B, T, D) straight to (B, heads, T, d), which mixes tokens and heads
        "multi_head_attention": ("1.3", """
            b, t, d = x.shape
            q, k, v = (x @ w_qkv.T + b_qkv).chunk(3, dim=-1)
            q, k, v = (z.reshape(b, heads, t, d // heads) for z in (q, k, v))
            out = F.scaled_dot_product_attention(q, k, v)
            return out.reshape(b, t, d) @ w_out.T + b_out
        """),
        # the final LayerNorm (model.norm) forgotten before the head
        "vit_forward": ("1.4", """
            t = model.patch_embed.proj(x).flatten(2).transpose(1, 2)
            cls = model.cls_token.expand(x.shape[0], -1, -1)
            t = torch.cat([cls, t], dim=1) + model.pos_embed
            for blk in model.blocks:
                t = t + blk.attn(blk.norm1(t))
                t = t + blk.mlp(blk.norm2(t))
            return model.head(t[:, 0])
        """),
    },
    "02_attention": {
        # no residual identity: the fused attention matrices are chained as they are (rows renormalised)
        "my_rollout": ("2.1", """
            batch, _, tokens, _ = attentions[0].shape
            joint = torch.eye(tokens).repeat(batch, 1, 1)
            k = int(discard_ratio * (tokens - num_prefix_tokens))
            for a in attentions:
                fused = {"mean": a.mean(dim=1), "min": a.min(dim=1).values, "max": a.max(dim=1).values}[head_fusion]
                if k > 0:
                    patches = fused[..., num_prefix_tokens:]
                    drop = patches.argsort(dim=-1)[..., :k]
                    fused = torch.cat([fused[..., :num_prefix_tokens], patches.scatter(-1, drop, 0.0)], dim=-1)
                joint = (fused / fused.sum(dim=-1, keepdim=True)) @ joint
            return joint[:, 0, num_prefix_tokens:]
        """),
        # heads averaged before clamping (vit-explain's order) instead of clamping each head first
        "my_grad_rollout": ("2.2", """
            batch, _, tokens, _ = attentions[0].shape
            eye = torch.eye(tokens)
            joint = eye.repeat(batch, 1, 1)
            for a, g in zip(attentions, gradients, strict=True):
                fused = (a * g).mean(dim=1).clamp(min=0)
                fused = attention.discard_lowest(fused, discard_ratio, num_prefix_tokens)
                a_tilde = (fused + eye) / 2
                a_tilde = a_tilde / a_tilde.sum(dim=-1, keepdim=True)
                joint = a_tilde @ joint
            return joint[:, 0, num_prefix_tokens:]
        """),
        # the query taken at patch_index without skipping the prefix (CLS) token: off by one token
        "my_qk_similarity": ("2.3", """
            query = q[:, :, patch_index, :]  # (B, heads, d)
            keys = k[:, :, num_prefix_tokens:, :]  # (B, heads, N, d)
            return torch.einsum("bhd,bhnd->bhn", query, keys) / q.shape[-1] ** 0.5
        """),
    },
    "03_gradient_attribution": {
        # the signed gradient: abs() forgotten
        "saliency": ("3.1", """
            x = x.detach().clone().requires_grad_(True)
            score = model(x).gather(1, target.view(-1, 1)).sum()
            (grad,) = torch.autograd.grad(score, x)
            return grad
        """),
        # |gradient| averaged over the noisy copies instead of the signed gradient
        "smoothgrad": ("3.2", """
            n, b = noise.shape[:2]
            span = x.flatten(1).max(1).values - x.flatten(1).min(1).values  # (B,)
            sigma = (noise_level * span).view(1, b, 1, 1, 1)
            noisy = (x.unsqueeze(0) + sigma * noise).reshape(n * b, *x.shape[1:]).detach().requires_grad_(True)
            score = model(noisy).gather(1, target.repeat(n).view(-1, 1)).sum()
            (grad,) = torch.autograd.grad(score, noisy)
            return grad.abs().view(n, b, *x.shape[1:]).mean(0)
        """),
        # left Riemann rule, alpha_k = k / m, instead of the midpoint rule (k + 1/2) / m
        "integrated_gradients": ("3.3", """
            b = x.shape[0]
            alphas = torch.arange(steps, dtype=x.dtype, device=x.device) / steps  # (m,)
            path = baseline.unsqueeze(0) + alphas.view(-1, 1, 1, 1, 1) * (x - baseline).unsqueeze(0)
            path = path.reshape(steps * b, *x.shape[1:]).detach().requires_grad_(True)
            score = model(path).gather(1, target.repeat(steps).view(-1, 1)).sum()
            (grad,) = torch.autograd.grad(score, path)
            return (x - baseline) * grad.view(steps, b, *x.shape[1:]).mean(0)
        """),
        # the signed violation: abs() of the numerator forgotten
        "completeness_error": ("3.4", """
            with torch.no_grad():
                fx = model(x).gather(1, target.view(-1, 1)).squeeze(1)
                fb = model(baseline).gather(1, target.view(-1, 1)).squeeze(1)
            delta = fx - fb
            return (attr.flatten(1).sum(1) - delta) / delta.abs()
        """),
    },
    "04_gradcam": {
        # HiResCAM: the element-wise product gradient * activation instead of the position-averaged gradient
        "my_grad_cam": ("4.1", """
            store = {}

            def forward_hook(module, inputs, output):
                store["A"] = output
                output.register_hook(lambda grad: store.__setitem__("dA", grad))

            x = x.detach().requires_grad_(True)
            handle = layer.register_forward_hook(forward_hook)
            try:
                logits = model(x)
                target = torch.as_tensor(target, device=x.device).reshape(-1).expand(x.shape[0])
                logits.gather(1, target[:, None]).sum().backward()
            finally:
                handle.remove()
            model.zero_grad(set_to_none=True)
            return (store["dA"] * store["A"].detach()).sum(dim=1).clamp(min=0)
        """),
        # the ReLU forgotten: negative evidence stays in the map
        "my_counterfactual": ("4.2", """
            target = torch.as_tensor(target, device=x.device).reshape(-1).expand(x.shape[0])
            with cam.capture(model, layer) as rec:
                model(x).gather(1, target[:, None]).sum().backward()
            model.zero_grad(set_to_none=True)
            return (-rec.gradients.mean(dim=(2, 3), keepdim=True) * rec.activations).sum(dim=1)
        """),
        # a fraction of each map's maximum (CAM's "20 % of the max" rule) instead of min-max normalising first
        "my_segment": ("4.3", """
            flat = maps.reshape(maps.shape[0], -1)
            return (flat / flat.max(dim=1, keepdim=True).values >= threshold).reshape(maps.shape)
        """),
    },
}


def _with_wrong_bodies(source: str, bodies: dict[str, tuple[str, str]]) -> tuple[str, list[str]]:
    """``source`` with the body of every solution region replaced by the wrong body of the function it belongs to
    (the last ``def`` above the marker), indented like the marker. Returns the new source and the functions."""
    lines, out, functions, func = source.split("\n"), [], [], None
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := re.match(r"\s*def (\w+)\(", line):
            func = m.group(1)
        out.append(line)
        if line.strip() == BEGIN:
            assert func in bodies, f"exercise function {func!r} has no known wrong solution in WRONG: add one"
            indent = line[: len(line) - len(line.lstrip())]
            body = textwrap.dedent(bodies[func][1]).strip("\n").split("\n")
            out += [indent + b if b.strip() else "" for b in body]
            i = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == END)
            out.append(lines[i])
            functions.append(func)
        i += 1
    return "\n".join(out), functions


def _check_lines(cell) -> list[str]:
    """The lines of a cell's output that report a check (``✅ PASS  name...``, ``❌ FAIL  ...``, ``⏳ TODO  ...``)."""
    text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
    return [line for line in text.splitlines() if line.startswith(SYMBOLS)]


@pytest.mark.notebook
@pytest.mark.parametrize("name", sorted(WRONG))
def test_each_check_rejects_a_known_wrong_solution(name: str, fake_data_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = ROOT / "solutions" / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    exercise_cells = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and BEGIN in cell.source:
            cell.source, functions = _with_wrong_bodies(cell.source, WRONG[name])
            exercise_cells.append((index, functions))
    replaced = {f for _, functions in exercise_cells for f in functions}
    missing = set(WRONG[name]) - replaced
    assert not missing, f"wrong solutions for functions the notebook does not have: {sorted(missing)}"

    smoke_env(monkeypatch, fake_data_dir, strict=False)
    execute_notebook(nb, path, f"wrong solutions/{name}.ipynb")

    problems = []
    for index, functions in exercise_cells:
        lines = _check_lines(nb.cells[index])
        problems += [f"cell {index}: a check passed: {line}" for line in lines if line.startswith("✅ PASS")]
        for func in functions:
            number = WRONG[name][func][0]
            mine = [line for line in lines if line.split("  ", 1)[-1].startswith(number + " ")]
            if not mine:
                problems.append(f"cell {index}: no check of exercise {number} ({func}) printed a result")
            for line in mine:
                if line.startswith("⏳ TODO"):
                    problems.append(f"cell {index}: the wrong {func} counts as not done: {line}")
                elif "your code raised" in line:
                    problems.append(f"cell {index}: the wrong {func} raised instead of returning a result: {line}")
    assert not problems, "\n".join(problems)
