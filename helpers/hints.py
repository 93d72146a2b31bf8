"""Hints for the exercise checks, kept here so they are not visible in a student's notebook until a check fails.

``HINTS[number]`` is printed by :func:`helpers.checks.check` / :func:`helpers.checks.check_close` under a failed
check whose name starts with that exercise number (``"4.1 Grad-CAM"`` -> ``"4.1"``), unless the call passes its own
``hint=``. A hint says where to look, one line; it is never shown when a check passes or is not done yet. Add the
hint of a new exercise here (``tests/test_hints.py`` checks that every exercise of the solution notebooks has one).
"""

from __future__ import annotations

__all__ = ["HINTS", "hint_for"]

HINTS: dict[str, str] = {
    # 00 Getting started
    "0.1": "subtract the row maximum before exp, then divide by the row sum",
    # 01 ViT refresher
    "1.1a": "reshape to (B, C, H/p, p, W/p, p), permute to (B, H/p, W/p, C, p, p), then flatten",
    "1.1b": "tokens = patches @ weight.T + bias",
    "1.2": "scores = q @ k.transpose(-2, -1) / sqrt(d); softmax over the last axis; then @ v",
    "1.3": "q, k, v = (x @ w_qkv.T + b_qkv).chunk(3, -1); heads: reshape(B, T, heads, d).transpose(1, 2)",
    "1.4": "tokens -> cat CLS -> + pos_embed -> for each block: t = t + attn(norm1(t)); t = t + mlp(norm2(t)) "
    "-> norm -> head on token 0",
    # 02 Attention
    "2.1": "add the identity, halve, then divide every row by its own sum (keepdim=True); multiply the new block on "
    "the LEFT of the running product; discard per row and per image among the patch columns only, before adding "
    "the identity",
    "2.2": "pair gradients[i] with attentions[i]; clamp each head's product, then average; discard after fusing the "
    "heads, before adding I",
    "2.3": "one query token against the patch keys; divide by sqrt(head dim)",
    # 03 Gradient attribution
    "3.1": "gather the target logit of every image, sum, take the gradient w.r.t. the input, then the absolute value",
    "3.2": "sigma per image = noise_level * (max - min); x + sigma * noise[k]; average the signed gradients over k",
    "3.3": "alphas (k + 0.5) / steps; path points baseline + alpha (x - baseline); average the gradients over the "
    "path, then multiply by (x - baseline)",
    "3.4": "sum the attributions of each image over (3, H, W); compare with f(x) - f(baseline) of the target logit; "
    "divide by |f(x) - f(baseline)|",
    # 04 CAM and Grad-CAM
    "4.1": "the forward hook stores A and calls A.register_hook to store dA; alpha = dA averaged over (h, w); map = "
    "ReLU(sum over channels of alpha * A); handle.remove() in a finally: block",
    "4.2": "the same as Grad-CAM with alpha replaced by -alpha (negate before the ReLU)",
    "4.3": "normalise each map separately (min over its own pixels), then compare with >=",
    # 05 LIME and occlusion
    "5.1": "keep = masks[:, segments] has shape (N, H, W); use np.where(keep[..., None], image, fill)",
    "5.2": "weights pi = sqrt(exp(-d^2 / width^2)); centre Z and f with pi-weighted means; alpha = 1",
    "5.3": "positions from occlusion.window_positions (the last window may stick out: slicing cuts it off); copy "
    "fill's pixels from the window's own position (fill[..., r:r+w, c:c+w], never a fixed colour); accumulate the "
    "drop on every pixel of the window AND count the windows per pixel; return total / count",
    # 06 Feature visualisation
    "6.1": "absolute (not squared) differences of vertical and of horizontal neighbours, no wrap-around; sum over "
    "(C, H, W) of each image",
    "6.2": "take the gradient w.r.t. the UNSHIFTED image (or roll the gradient back by -shift); divide by its mean "
    "absolute value per image; add (ascent), then clamp to [0, 1]",
    "6.3": "score = mean of acts[:, channel] over (h, w); torch.topk keeps the LARGEST, sorted descending",
    # 07 Evaluating explanations
    "7.1": "flatten each map and mask to (B, H*W); the index of the map's maximum (argmax) picks one mask entry per "
    "image",
    "7.2": "randomise the groups in the order layer_groups(model)[::-1] (output first) WITHOUT restoring between "
    "steps, collect a map after each step, and put the saved state_dict back at the end (try/finally)",
    "7.3": "order = argsort of the flattened map, descending (stable); after k of `steps` steps the first "
    "round(k * H * W / steps) pixels come from the substrate; record the softmax probability of the target",
    "7.4": "rank the pixels of each map (all channels of a pixel together), keep the top round(fraction * H * W) and "
    "set all C channels there to fill",
    # 08 Concepts and uncertainty
    "8.1": "concept rows get label 1, random rows 0; divide every row by the mean row norm before fitting; return "
    "coef_[0] divided by its norm (it already points towards label 1)",
    "8.2": "conf, pred = probs.max(1); bin m holds ((m-1)/M, m/M]; weight each bin's |accuracy - mean confidence| "
    "by its share of ALL the images (empty bins add 0)",
    "8.3": "total = entropy of the mean over members (axis 0); mutual information = total minus the mean of the "
    "members' entropies; natural log, 0 log 0 = 0",
    # 09 Relevance and Shapley values
    "9.1": "z includes the bias; add eps with the SIGN of z (+1 where z = 0); R_in = a * ((R_out / denominator) @ W)",
    "9.2": "sum each image's relevance over all its (C, H, W) entries; subtract the logit; divide by |logit| (abs: "
    "logits can be negative)",
    "9.3": "weight |S|! (n - |S| - 1)! / n! for a coalition S WITHOUT i (the empty one included), times "
    "v(S + i) - v(S); every coalition's value comes from one call of value_fn",
    "9.4": "(n - 1) / (C(n, s) * s * (n - s)): one coalition's weight, with the binomial coefficient C(n, s)",
    # 10 Inside the ViT
    "10.1": "take token 0 (CLS) of every depth: stream[:, :, 0]; then the final LayerNorm model.norm, then model.head",
    "10.2": "centre the part over its own D features, but divide by the std of the WHOLE final state (biased, + eps "
    "under the root); multiply by model.norm.weight, then dot with model.head.weight[target]",
    "10.3": "the cache comes from the SOURCE run; the patch goes into the TARGET run; pass tokens to inside.Patch",
    "10.4": "subtract b_pre before the encoder; keep the k largest pre-activations (not the largest absolute "
    "values), ReLU them, zeros elsewhere; the loss is the mean over all N x D entries",
}


def hint_for(check_name: str) -> str:
    """The registered hint of a check, by the exercise number that starts its name; ``""`` when there is none."""
    if not isinstance(check_name, str):
        raise TypeError(f"a check name is a string such as '4.1 Grad-CAM', got {type(check_name).__name__}")
    number = check_name.split(maxsplit=1)[0] if check_name.strip() else ""
    return HINTS.get(number, "")
