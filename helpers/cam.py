"""Class Activation Maps: CAM, Grad-CAM, counterfactual and Guided Grad-CAM, segmentation by thresholding.

Conventions: images ``x`` are float tensors (B, 3, H, W), normalised as the model expects; a *map* is a float tensor
(B, h, w) at the resolution of the target layer (not upsampled). :func:`upsample` brings it to (B, H, W),
:func:`normalize_map` rescales each map to [0, 1] (the min-max normalisation pytorch-grad-cam uses).

* :func:`capture` -- a context manager that hooks one layer and records its activations (B, C, h, w) and, after a
  backward pass, their gradients; the hooks are removed on exit, also after an exception. It lives in
  :mod:`helpers.hooks` with :func:`resolve_layer` and :func:`count_hooks` (all three re-exported here).
* :func:`cam` -- CAM (Zhou et al. 2016) for networks that end in global average pooling + one linear layer:
  ``CAM_c = sum_k w_ck A_k``.
* :func:`grad_cam` -- Grad-CAM (Selvaraju et al. 2017): ``alpha_k = mean_ij dy_c/dA_k(ij)``,
  ``map = ReLU(sum_k alpha_k A_k)``; ``counterfactual=True`` negates the gradients.
* :func:`guided_grad_cam` -- guided backpropagation (Springenberg et al. 2015, :func:`helpers.attribution.
  guided_backprop`) times the upsampled Grad-CAM map.
* :func:`threshold_segment`, :func:`iou` -- turn a map into a mask and score it against an object mask;
  :func:`object_mask` gives rough hand-made masks for bundled ``skimage.data`` photos.
* :func:`vit_reshape`, :func:`reshape_for` -- turn ViT tokens (B, P + N, C) into a feature map (B, C, h, w).
* :func:`check_grad_cam` -- the exercise check of notebook 04 (4.1 Grad-CAM, 4.2 counterfactual): the map at a
  layer where the gradient varies over positions, and no hook left behind, also after an error.
* :func:`library_cam` -- the pytorch-grad-cam methods (GradCAM++, XGradCAM, ScoreCAM, EigenCAM, HiResCAM, ...)
  behind one call. Figures: :mod:`helpers.plotting` (``overlay_heatmap``, ``compare_methods``).
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import checks
from .attribution import class_indices, guided_backprop
from .data import resize_center_crop
from .hooks import ActivationsAndGradients, capture, count_hooks, resolve_layer
from .validation import check_images

__all__ = [
    "ActivationsAndGradients",
    "check_grad_cam",
    "count_hooks",
    "capture",
    "cam",
    "grad_cam",
    "upsample",
    "normalize_map",
    "guided_grad_cam",
    "threshold_segment",
    "iou",
    "vit_reshape",
    "reshape_for",
    "resolve_layer",
    "LIBRARY_METHODS",
    "library_cam",
    "ROUGH_MASKS",
    "object_mask",
]



# ----------------------------------------------------------------------------------------------------------------
# CAM and Grad-CAM
# ----------------------------------------------------------------------------------------------------------------


def _targets(target: Any, batch: int, logits: torch.Tensor | None = None) -> torch.Tensor:
    """``target`` (an int, a sequence or tensor of B ints, or ``None`` = the predicted class) -> (B,) long."""
    if target is None:
        if logits is None:
            raise ValueError("target=None (the predicted class) needs the logits")
        return logits.argmax(dim=1)
    if logits is None:
        return class_indices(target, batch)
    return class_indices(target, batch, logits.shape[1], logits.device)


def cam(features: torch.Tensor, fc_weight: torch.Tensor, target: Any) -> torch.Tensor:
    """Class Activation Map (Zhou et al. 2016) of a GAP + linear network: ``CAM_c(i, j) = sum_k w_ck A_k(i, j)``.

    Args:
        features: last convolutional feature maps A, (B, K, h, w).
        fc_weight: weight of the linear layer after global average pooling, (num_classes, K).
        target: class index c: an int or (B,) ints.
    Returns:
        (B, h, w) maps (no ReLU, no normalisation, not upsampled).
    """
    if not isinstance(features, torch.Tensor) or features.ndim != 4:
        raise ValueError(f"features must be a (B, K, h, w) tensor, got "
                         f"{tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__}")
    if not isinstance(fc_weight, torch.Tensor) or fc_weight.ndim != 2 or fc_weight.shape[1] != features.shape[1]:
        raise ValueError(f"fc_weight must be (num_classes, {features.shape[1]}), got "
                         f"{tuple(fc_weight.shape) if isinstance(fc_weight, torch.Tensor) else fc_weight}")
    t = class_indices(target, features.shape[0], fc_weight.shape[0])
    w = fc_weight.detach()[t.to(fc_weight.device)]  # (B, K)
    return torch.einsum("bk,bkhw->bhw", w.to(features.dtype), features.detach())


def grad_cam(
    model: nn.Module,
    x: torch.Tensor,
    target: Any,
    layer: nn.Module | str,
    relu: bool = True,
    counterfactual: bool = False,
    reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) of the logit of class ``target`` at ``layer``.

    ``alpha_k = (1 / hw) sum_ij d y_c / d A_k(i, j)`` and ``map = ReLU(sum_k alpha_k A_k)``. With
    ``counterfactual=True`` the gradients are negated (``alpha_k -> -alpha_k``): the map shows regions whose
    removal would *raise* the class score. Put the model in ``eval()`` mode first (BatchNorm, dropout).

    Args:
        model: a classifier returning logits (B, num_classes).
        x: images (B, C, H, W), normalised as the model expects.
        target: class index: an int, (B,) ints, or ``None`` for each image's predicted class.
        layer: the target layer (module or dotted name); its output must be (B, C, h, w) or, with ``reshape``,
            transformable to it (ViT tokens).
        relu: apply the ReLU (``False`` keeps the signed map).
    Returns:
        (B, h, w) maps at the layer's resolution (use :func:`upsample` and :func:`normalize_map` to display).
    """
    check_images(x)
    inp = x.detach().requires_grad_(True)  # so the graph reaches the layer even when the weights are frozen
    with torch.enable_grad(), capture(model, layer, reshape) as rec:
        logits = model(inp)
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            raise ValueError("the model must return logits of shape (B, num_classes)")
        if rec.calls != 1:
            raise ValueError(f"the target layer ran {rec.calls} times in one forward pass; pick a layer that is "
                             "used exactly once (e.g. a block, not a shared activation module)")
        t = _targets(target, x.shape[0], logits)
        score = logits.gather(1, t[:, None]).sum()
        torch.autograd.grad(score, rec.output)  # fires the gradient hook; no .grad accumulates on the weights
        acts, grads = rec.activations, rec.gradients
    if acts is None or grads is None or acts.ndim != 4:
        raise ValueError(f"the target layer's output {None if acts is None else tuple(acts.shape)} is not a "
                         "(B, C, h, w) feature map: pass reshape= for token outputs (see reshape_for)")
    if counterfactual:
        grads = -grads
    weights = grads.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
    out = (weights * acts).sum(dim=1)
    return out.clamp(min=0) if relu else out


def upsample(maps: torch.Tensor, size: int | tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Resize maps (B, h, w) or (h, w) to ``size`` = H or (H, W): (B, H, W) or (H, W).

    Bilinear with ``align_corners=False`` (the same pixel grid as OpenCV's ``resize``, which pytorch-grad-cam uses);
    ``mode="nearest"`` shows the coarse cells as blocks.
    """
    if not isinstance(maps, torch.Tensor) or maps.ndim not in (2, 3):
        raise ValueError("maps must be a (B, h, w) or (h, w) tensor")
    size = (size, size) if isinstance(size, int) else tuple(size)
    m = maps[None, None] if maps.ndim == 2 else maps[:, None]
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    out = F.interpolate(m.float(), size=size, mode=mode, **kwargs)
    return out[0, 0] if maps.ndim == 2 else out[:, 0]


def normalize_map(maps: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Min-max normalise each map to [0, 1]: ``(m - min) / (max(m - min) + eps)`` per sample.

    (B, h, w) -> (B, h, w), or (h, w) -> (h, w). This is pytorch-grad-cam's ``scale_cam_image``; a constant map
    becomes all zeros. Accepts NumPy arrays too (returns a tensor).
    """
    m = torch.as_tensor(maps)
    if m.ndim not in (2, 3):
        raise ValueError(f"maps must be (B, h, w) or (h, w), got shape {tuple(m.shape)}")
    m = m.float()
    flat = m.reshape(1 if m.ndim == 2 else m.shape[0], -1)
    flat = flat - flat.min(dim=1, keepdim=True).values
    flat = flat / (flat.max(dim=1, keepdim=True).values + eps)
    return flat.reshape(m.shape)


# ----------------------------------------------------------------------------------------------------------------
# Guided backpropagation and Guided Grad-CAM
# ----------------------------------------------------------------------------------------------------------------


def guided_grad_cam(
    model: nn.Module,
    x: torch.Tensor,
    target: Any,
    layer: nn.Module | str,
    mode: str = "bilinear",
    reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Guided Grad-CAM: guided backprop (B, C, H, W) times the Grad-CAM map upsampled to (H, W) with ``mode``.

    The product keeps the fine detail of guided backprop only where Grad-CAM says the class evidence is.
    Returns (B, C, H, W). (captum's ``GuidedGradCam`` is the same with ``mode="nearest"``.)
    """
    gb = guided_backprop(model, x, target if target is not None else _predicted(model, x))
    target = target if target is not None else _predicted(model, x)
    g = upsample(grad_cam(model, x, target, layer, reshape=reshape), tuple(x.shape[-2:]), mode=mode)
    return gb * g[:, None].to(gb.dtype)


def _predicted(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


# ----------------------------------------------------------------------------------------------------------------
# Segmentation
# ----------------------------------------------------------------------------------------------------------------


def threshold_segment(maps: torch.Tensor, threshold: float, normalize: bool = True) -> torch.Tensor:
    """Segment by thresholding: ``mask = normalize_map(maps) >= threshold`` (a boolean tensor, same shape).

    ``maps`` is (B, H, W) or (H, W); with ``normalize=True`` (default) each map is first min-max normalised, so
    ``threshold`` is a fraction in [0, 1] of each map's range (CAM used 20% of the maximum).
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a number, got {type(threshold).__name__}")
    if normalize and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1] for normalised maps, got {threshold}")
    m = torch.as_tensor(maps)
    if m.ndim not in (2, 3):
        raise ValueError(f"maps must be (B, H, W) or (H, W), got shape {tuple(m.shape)}")
    return (normalize_map(m) if normalize else m) >= threshold


def iou(mask_a: torch.Tensor, mask_b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of boolean masks (..., H, W) -> (...) float; two empty masks give IoU 1."""
    a, b = torch.as_tensor(mask_a), torch.as_tensor(mask_b)
    if a.dtype != torch.bool or b.dtype != torch.bool:
        raise TypeError(f"iou needs boolean masks, got {a.dtype} and {b.dtype} (threshold the maps first)")
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.ndim < 2:
        raise ValueError("masks must be at least 2-D (H, W)")
    inter = (a & b).sum(dim=(-2, -1)).float()
    union = (a | b).sum(dim=(-2, -1)).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


#: Rough hand-made object masks for bundled ``skimage.data`` photos, drawn at the photo's native resolution
#: (height, width): a list of shapes, each ``("polygon", [(x, y), ...])`` or ``("ellipse", (cx, cy, rx, ry))``.
ROUGH_MASKS: dict[str, dict[str, Any]] = {
    # the tabby cat's head and chest; the blurred background on the right and the top-left corner are excluded
    "chelsea": {"size": (300, 451), "shapes": [("polygon", [
        (40, 0), (400, 0), (398, 40), (380, 90), (372, 140), (383, 200), (392, 250), (395, 300), (0, 300),
        (0, 150), (8, 95), (22, 45)])]},
    # the Falcon 9 rocket (nose cone to the bottom of the first stage); the launch towers are excluded
    "rocket": {"size": (427, 640), "shapes": [("polygon", [
        (321, 126), (329, 130), (334, 146), (335, 400), (345, 420), (300, 420), (309, 400), (310, 146),
        (314, 130)])]},
    # cup (with its handle) and saucer, spoon included
    "coffee": {"size": (400, 600), "shapes": [
        ("ellipse", (285, 250, 200, 145)),
        ("ellipse", (292, 115, 122, 100)),
    ]},
}


def object_mask(name: str, size: int | None = None) -> torch.Tensor:
    """The rough object mask of a bundled photo (see :data:`ROUGH_MASKS`): a boolean (H, W) tensor at the photo's
    resolution or, with ``size``, resized and centre-cropped to (size, size) exactly like
    ``helpers.data.sample_photos(size=size)`` does with the photo."""
    if name not in ROUGH_MASKS:
        raise ValueError(f"no rough mask for {name!r}; available: {', '.join(sorted(ROUGH_MASKS))}")
    from matplotlib.path import Path as MplPath

    h, w = ROUGH_MASKS[name]["size"]
    yy, xx = np.mgrid[0:h, 0:w]
    pts = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], axis=1)  # pixel centres
    mask = np.zeros(h * w, dtype=bool)
    for kind, spec in ROUGH_MASKS[name]["shapes"]:
        if kind == "polygon":
            mask |= MplPath(np.asarray(spec, dtype=float)).contains_points(pts)
        elif kind == "ellipse":
            cx, cy, rx, ry = spec
            mask |= ((pts[:, 0] - cx) / rx) ** 2 + ((pts[:, 1] - cy) / ry) ** 2 <= 1.0
        else:  # pragma: no cover - a typo in ROUGH_MASKS
            raise ValueError(f"unknown shape kind {kind!r}")
    mask = mask.reshape(h, w)
    if size is not None:
        img = np.repeat(mask[:, :, None].astype(np.uint8) * 255, 3, axis=2)
        mask = resize_center_crop(img, size)[..., 0] >= 128
    return torch.from_numpy(np.ascontiguousarray(mask))


# ----------------------------------------------------------------------------------------------------------------
# Vision Transformers
# ----------------------------------------------------------------------------------------------------------------


def vit_reshape(tokens: torch.Tensor, num_prefix_tokens: int = 1, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """ViT tokens (B, P + N, C) -> feature map (B, C, h, w): drop the P prefix tokens (CLS, distillation,
    registers) and lay the N = h * w patch tokens out on their grid (row-major). ``grid`` defaults to a square."""
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 3:
        raise ValueError(f"expected ViT tokens (B, P + N, C), got "
                         f"{tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__}")
    patches = tokens[:, num_prefix_tokens:]
    n = patches.shape[1]
    if grid is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"{n} patch tokens (after dropping {num_prefix_tokens} prefix tokens) do not form a "
                             "square grid: pass grid=(h, w) or the right num_prefix_tokens")
        grid = (side, side)
    if grid[0] * grid[1] != n:
        raise ValueError(f"grid {grid} does not hold {n} patch tokens")
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], grid[0], grid[1])


def reshape_for(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The reshape transform for a timm or course ViT (uses ``model.num_prefix_tokens``, default 1)."""
    n_prefix = int(getattr(model, "num_prefix_tokens", 1))
    return functools.partial(vit_reshape, num_prefix_tokens=n_prefix)


# ----------------------------------------------------------------------------------------------------------------
# pytorch-grad-cam
# ----------------------------------------------------------------------------------------------------------------

#: pytorch-grad-cam class names by short name.
LIBRARY_METHODS = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "scorecam": "ScoreCAM",
    "eigencam": "EigenCAM",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "eigengradcam": "EigenGradCAM",
    "ablationcam": "AblationCAM",
}


def library_cam(
    method: str,
    model: nn.Module,
    x: torch.Tensor,
    target: Any,
    layer: nn.Module | str,
    reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 32,
) -> torch.Tensor:
    """A pytorch-grad-cam method (``"gradcam"``, ``"gradcam++"``, ``"xgradcam"``, ``"scorecam"``, ``"eigencam"``,
    ``"hirescam"``, ... see :data:`LIBRARY_METHODS`) on images (B, C, H, W) for class ``target``.

    Returns (B, H, W) maps, upsampled to the input size and min-max normalised by the library. ``batch_size`` is
    the number of masked images per forward pass for ScoreCAM / AblationCAM. Note: the library calls
    ``model.eval()``.
    """
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    key = method.lower()
    if key not in LIBRARY_METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(LIBRARY_METHODS)}")
    check_images(x)
    module = resolve_layer(model, layer)
    cls = getattr(pytorch_grad_cam, LIBRARY_METHODS[key])
    t = _targets(target if target is not None else _predicted(model, x), x.shape[0])
    targets = [ClassifierOutputTarget(int(c)) for c in t]
    # ScoreCAM / AblationCAM draw a tqdm bar per image on stderr with no switch to turn it off: silence them
    noisy = key in ("scorecam", "ablationcam")
    quiet = contextlib.redirect_stderr(io.StringIO()) if noisy else contextlib.nullcontext()
    with cls(model=model, target_layers=[module], reshape_transform=reshape) as method_obj, quiet:
        method_obj.batch_size = batch_size  # read by ScoreCAM / AblationCAM (default 16 / 32)
        out = method_obj(input_tensor=x.detach(), targets=targets)
    for p in model.parameters():  # the library backpropagates with .backward(): leave no gradients behind
        p.grad = None
    return torch.from_numpy(np.asarray(out, dtype=np.float32))


# ----------------------------------------------------------------------------------------------------------------
# Exercise check (notebook 04)
# ----------------------------------------------------------------------------------------------------------------


def check_grad_cam(name: str, student_fn: Callable[..., torch.Tensor], model: nn.Module, x: torch.Tensor,
                   target: Any, layer: nn.Module, counterfactual: bool = False, atol: float = 1e-5,
                   strict: bool | None = None):
    """Check ``student_fn(model, x, target, layer) -> (B, h, w)`` against :func:`grad_cam` (``counterfactual`` as
    there), both min-max normalised per map, within ``atol``; then that it leaves no hook on the model, after a
    normal call and after one whose forward pass fails (an input with the wrong number of channels).

    Pick a ``layer`` where the gradient varies over positions (not one followed directly by global average pooling
    and a linear layer): there CAM, HiResCAM or ``ReLU(sum_k dy/dA_k * A_k)`` give the same normalised map as
    Grad-CAM and would pass. Returns the :class:`helpers.checks.CheckResult`.
    """
    model.eval()
    before = count_hooks(model)
    expected = normalize_map(grad_cam(model, x, target, layer, counterfactual=counterfactual)).cpu()

    def test() -> str:
        actual = student_fn(model, x.detach().clone(), target, layer)
        left = count_hooks(model) - before
        if left:
            raise AssertionError(f"{left} hook(s) still registered on the model after your function returned: "
                                 "keep each handle and call handle.remove() (in a finally: block)")
        if not isinstance(actual, torch.Tensor) or tuple(actual.shape) != tuple(expected.shape):
            shape = tuple(actual.shape) if isinstance(actual, torch.Tensor) else type(actual).__name__
            raise AssertionError(f"expected maps of shape {tuple(expected.shape)} (B, h, w) at the layer's "
                                 f"resolution, not upsampled; got {shape}")
        diff = checks.assert_close(normalize_map(actual.detach().float()).cpu(), expected, atol=atol, rtol=0.0,
                                   what="min-max normalised map")
        try:
            student_fn(model, x.detach()[:, :2].clone(), target, layer)  # 2 channels: the first conv fails
        except Exception:  # noqa: BLE001 - expected: we only look at the hooks afterwards
            pass
        model.zero_grad(set_to_none=True)
        left = count_hooks(model) - before
        if left:
            raise AssertionError(f"{left} hook(s) left on the model after a forward pass that raised an error: "
                                 "remove them in a finally: block (or use a context manager)")
        return f"matches helpers.cam.grad_cam (max |diff| = {diff:.2g}); no hook left, also after an error"

    return checks.check(name, test, strict=strict)
