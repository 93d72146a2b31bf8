"""Plotting: images, heatmap overlays, attribution maps, grids, method comparisons, training curves, confusion
matrices.

Images may be torch tensors or numpy arrays, CHW or HWC (a leading batch dimension of 1 is dropped), uint8 in
[0, 255] or float in [0, 1]; pass ``mean``/``std`` to undo a normalisation first. Heatmaps are (h, w) of any size
(upsampled bilinearly to the image). Every function takes an optional ``ax`` (or makes its own figure) and returns
the ``matplotlib`` figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .maps import aggregate_channels, concentration, normalize_attribution

__all__ = [
    "to_display",
    "to_heatmap",
    "show_image",
    "overlay_heatmap",
    "image_grid",
    "compare_methods",
    "show_attribution",
    "shared_colorbar",
    "map_grid",
    "plot_history",
    "confusion_matrix_plot",
]


def _numpy(x: Any, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return x.numpy()
    if hasattr(x, "mode") and hasattr(x, "size") and hasattr(x, "convert"):  # PIL image
        return np.asarray(x.convert("RGB"))
    try:
        return np.asarray(x)
    except Exception as exc:  # noqa: BLE001
        raise TypeError(f"{what}: cannot convert a {type(x).__name__} to an array") from exc


def to_display(img: Any, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> np.ndarray:
    """Any image -> HWC float array in [0, 1] ready for ``imshow`` (greyscale stays (H, W)).

    Accepts (H, W), (H, W, C), (C, H, W) or (1, C, H, W) with C in {1, 3, 4} (alpha dropped); uint8 is divided by
    255. With ``mean`` and ``std`` the image is first denormalised (``x * std + mean``, channel-wise), then clipped.
    Without them a float image must lie in [0, 1] (a small overshoot from resampling is clipped).
    """
    arr = _numpy(img, "image")
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3, 4):
        arr = np.transpose(arr, (1, 2, 0))
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(f"expected an image of shape (H, W), (H, W, 3), (3, H, W) or (1, 3, H, W), got {arr.shape}")
    if arr.ndim == 3:
        arr = arr[..., :3]
    if arr.dtype == np.bool_:
        arr = arr.astype(np.float32)
    elif arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    elif np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0 or arr.max() > 255:
            raise ValueError(f"integer images must be in [0, 255], got [{arr.min()}, {arr.max()}]")
        arr = arr.astype(np.float32) / 255.0
    elif np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    else:
        raise TypeError(f"unsupported image dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ValueError("image contains NaN or inf")
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std (or neither)")
    if mean is not None:
        if arr.ndim != 3 or len(mean) != 3 or len(std) != 3:
            raise ValueError("denormalising needs an RGB image and 3 values each for mean and std")
        arr = arr * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
    elif arr.min() < -0.05 or arr.max() > 1.05:
        raise ValueError(f"float images must be in [0, 1] (got [{arr.min():.3g}, {arr.max():.3g}]); pass mean= and "
                         "std= to undo a normalisation")
    return np.clip(arr, 0.0, 1.0)


def to_heatmap(heatmap: Any, size: tuple[int, int] | None = None) -> np.ndarray:
    """A heatmap (h, w), (1, h, w) or (1, 1, h, w) -> float (h, w); upsampled bilinearly to ``size`` = (H, W)."""
    t = torch.as_tensor(_numpy(heatmap, "heatmap"))
    while t.dim() > 2 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 2:
        raise ValueError(f"expected a heatmap of shape (h, w) (a channel-summed map), got {tuple(t.shape)}")
    t = t.float()
    if not torch.isfinite(t).all():
        raise ValueError("heatmap contains NaN or inf")
    if size is not None and tuple(t.shape) != tuple(size):
        t = torch.nn.functional.interpolate(t[None, None], size=tuple(size), mode="bilinear", align_corners=False)[0, 0]
    return t.numpy()


def _new_ax(ax: Any = None, figsize: tuple[float, float] = (4, 4)):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    return ax.figure, ax


def show_image(img: Any, ax: Any = None, title: str | None = None, mean: Sequence[float] | None = None,
               std: Sequence[float] | None = None):
    """Show one image (see :func:`to_display` for what is accepted). Returns the figure."""
    disp = to_display(img, mean, std)
    fig, ax = _new_ax(ax)
    ax.imshow(disp, cmap="gray" if disp.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return fig


UNSIGNED_CMAP = "inferno"  # perceptually uniform: equal steps in value look like equal steps in colour
SIGNED_CMAP = "RdBu_r"  # diverging, blue negative, red positive, white at 0


def overlay_heatmap(img: Any, heatmap: Any, ax: Any = None, alpha: float = 0.5, cmap: str | None = None,
                    title: str | None = None, signed: bool = False, mean: Sequence[float] | None = None,
                    std: Sequence[float] | None = None, colorbar: bool = False,
                    limits: tuple[float, float] | None = None):
    """Draw ``heatmap`` over ``img``.

    ``heatmap`` (h, w) of any size is upsampled bilinearly to the image. Unsigned maps use ``cmap`` (default
    :data:`UNSIGNED_CMAP`, perceptually uniform) from ``min(0, min)`` to ``max``: zero stays the bottom of the scale,
    so a nearly flat positive map looks flat (it is not stretched to its own min-max). ``signed=True`` uses a
    diverging map (default :data:`SIGNED_CMAP`) centred at 0 with limits +-max|map|. ``limits=(lo, hi)`` fixes the
    colour scale instead (signed: ``lo < 0 < hi``), so that maps drawn side by side share one scale; pass
    ``colorbar=True`` to draw its colour bar. Returns the figure; ``fig.axes[-1].images[-1]`` is the heatmap layer
    (for a shared colour bar).
    """
    import matplotlib.colors as mcolors

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    disp = to_display(img, mean, std)
    hm = to_heatmap(heatmap, disp.shape[:2])
    fig, ax = _new_ax(ax)
    ax.imshow(disp, cmap="gray" if disp.ndim == 2 else None, vmin=0, vmax=1)
    if limits is not None and not limits[0] < limits[1]:
        raise ValueError(f"limits must be (lo, hi) with lo < hi, got {limits}")
    if signed:
        if limits is not None and not limits[0] < 0.0 < limits[1]:
            raise ValueError(f"signed limits must satisfy lo < 0 < hi, got {limits}")
        lim = float(np.abs(hm).max()) or 1.0
        lo, hi = limits if limits is not None else (-lim, lim)
        norm = mcolors.TwoSlopeNorm(vmin=lo, vcenter=0.0, vmax=hi)
        im = ax.imshow(hm, cmap=cmap or SIGNED_CMAP, norm=norm, alpha=alpha)
    else:
        lo, hi = limits if limits is not None else (min(0.0, float(hm.min())), float(hm.max()))
        im = ax.imshow(hm, cmap=cmap or UNSIGNED_CMAP, vmin=lo, vmax=hi if hi > lo else lo + 1.0, alpha=alpha)
    if colorbar:
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return fig


def image_grid(images: Sequence[Any], titles: Sequence[str] | None = None, ncols: int = 4, cmap: str | None = None,
               suptitle: str | None = None, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
               size: float = 2.5):
    """Images in a grid with ``ncols`` columns (a (B, C, H, W) tensor counts as B images). Returns the figure.

    2-D entries that are not images (e.g. heatmaps with values outside [0, 1]) are shown with ``cmap`` scaled to
    their range.
    """
    import matplotlib.pyplot as plt

    items = list(images) if not isinstance(images, (torch.Tensor, np.ndarray)) else [im for im in images]
    if not items:
        raise ValueError("image_grid needs at least one image")
    if titles is not None and len(titles) != len(items):
        raise ValueError(f"{len(items)} images but {len(titles)} titles")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    ncols = min(ncols, len(items))
    nrows = -(-len(items) // ncols)
    # room for the titles: 9-pt lines need about 0.17 in each, so two-line titles do not run into the row above
    title_lines = max((str(t).count("\n") + 1 for t in titles), default=0) if titles is not None else 0
    height = nrows * (size + 0.17 * title_lines) + (0.4 if suptitle else 0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, height), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= len(items):
            continue
        arr = _numpy(items[i], f"image {i}")
        if arr.ndim == 2 and np.issubdtype(arr.dtype, np.floating) and (arr.min() < 0 or arr.max() > 1):
            ax.imshow(arr, cmap=cmap or "viridis")
        else:
            disp = to_display(arr, mean, std)
            ax.imshow(disp, cmap=(cmap or "gray") if disp.ndim == 2 else None, vmin=0, vmax=1)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def map_grid(images: Any, maps: Mapping[str, Any], masks: Any = None, row_titles: Sequence[str] | None = None,
             cmap: str = "inferno", suptitle: str | None = None, size: float = 1.7,
             mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
    """Rows: images; columns: the image, then one map per entry of ``maps`` (``{name: (B, H, W)}``, all with the
    same B as ``images``). Each map is shown as ``|map| / max |map|`` (per image and method), so every panel shares
    one colour scale [0, 1] with one colour bar: the pattern is compared, not the raw scale. ``masks`` (B, H, W)
    bool are drawn as cyan contours (the ground truth). Returns the figure."""
    import matplotlib.pyplot as plt

    arrays = {name: _numpy(m, f"map {name!r}") for name, m in maps.items()}
    if not arrays:
        raise ValueError("map_grid needs at least one map")
    n = len(images)
    for name, a in arrays.items():
        if a.ndim != 3 or a.shape[0] != n:
            raise ValueError(f"map {name!r} must be (B, H, W) with B = {n} images, got {a.shape}")
    mask_arr = _numpy(masks, "masks") if masks is not None else None
    if row_titles is not None and len(row_titles) != n:
        raise ValueError(f"{n} images but {len(row_titles)} row titles")
    cols = len(arrays) + 1
    fig, axes = plt.subplots(n, cols, figsize=(size * cols + 0.8, size * n + (0.4 if suptitle else 0)),
                             squeeze=False)
    im = None
    for r in range(n):
        show_image(images[r], ax=axes[r, 0], mean=mean, std=std)
        if row_titles is not None:
            axes[r, 0].set_title(str(row_titles[r]), fontsize=8)
        for c, (name, a) in enumerate(arrays.items(), start=1):
            m = np.abs(a[r].astype(np.float64))
            top = m.max()
            im = axes[r, c].imshow(m / top if top > 0 else m, cmap=cmap, vmin=0.0, vmax=1.0)
            if mask_arr is not None:
                axes[r, c].contour(mask_arr[r].astype(float), levels=[0.5], colors="cyan", linewidths=0.8)
            axes[r, c].set_axis_off()
            if r == 0:
                axes[r, c].set_title(name, fontsize=8)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, pad=0.02, label="|map| / max |map|")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def compare_methods(image: Any, maps: Mapping[str, Any], title: str | None = None, alpha: float = 0.5,
                    cmap: str | None = None, signed: bool | Mapping[str, bool] = False,
                    mean: Sequence[float] | None = None, std: Sequence[float] | None = None, size: float = 2.8,
                    axes: Sequence[Any] | None = None, shared: bool = True, annotate: bool = True):
    """One row: the image, then each method's heatmap overlaid on it (titled with the method's name).

    ``shared=True`` (default) divides each map by its own max |map| (zero stays zero) and draws every panel on ONE
    colour scale, [0, 1] (or [-1, 1] for a signed map), with one colour bar: methods have different units, so the
    *pattern* is compared, and a nearly flat map looks flat. ``shared=False`` draws each map on its own scale
    (``overlay_heatmap``'s default), without a colour bar. ``annotate=True`` adds each map's
    :func:`helpers.maps.concentration` (share of |map| in its top 10 % of pixels: 0.10 = flat, 1 = peaked)
    to its title. ``signed`` may be a bool for all maps or a dict name -> bool. ``axes`` (optional) are
    ``1 + len(maps)`` axes to draw in (e.g. one row of a bigger figure). Returns the figure.
    """
    import matplotlib.pyplot as plt

    if not maps:
        raise ValueError("compare_methods needs at least one heatmap")
    n = 1 + len(maps)
    if axes is None:
        fig, axes = plt.subplots(1, n, figsize=(size * n + (0.5 if shared else 0.0), size + 0.5), squeeze=False)
        axes = list(axes[0])
    elif len(axes) != n:
        raise ValueError(f"need {n} axes (image + {len(maps)} maps), got {len(axes)}")
    fig = axes[0].figure
    show_image(image, ax=axes[0], title="image", mean=mean, std=std)
    ims = {}
    for ax, (name, hm) in zip(axes[1:], maps.items(), strict=True):
        sgn = signed.get(name, False) if isinstance(signed, Mapping) else signed
        arr = _numpy(hm, f"map {name!r}").astype(np.float64)
        if arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 2:
            raise ValueError(f"map {name!r} must be (h, w), got {arr.shape}")
        label = name
        if annotate:
            label = f"{name}\ntop-10 %: {float(concentration(torch.from_numpy(arr)[None])[0]):.2f}"
        limits = None
        if shared:
            top = float(np.abs(arr).max())
            arr = arr / top if top > 0 else arr
            limits = (-1.0, 1.0) if sgn else (0.0, 1.0)
        overlay_heatmap(image, arr, ax=ax, alpha=alpha, cmap=cmap, title=label, signed=sgn, mean=mean, std=std,
                        limits=limits)
        ax.title.set_fontsize(8)
        ims[sgn] = (ax, ax.images[-1])
    if shared:
        from matplotlib.cm import ScalarMappable

        for last_ax, im in ims.values():  # opaque colour bar; one for the row, or one per kind if mixed
            bar = ScalarMappable(norm=im.norm, cmap=im.get_cmap())
            cb = fig.colorbar(bar, ax=list(axes) if len(ims) == 1 else last_ax, shrink=0.8, pad=0.02,
                              fraction=0.04 if len(ims) == 1 else 0.046)
            cb.set_label("map / max |map|", fontsize=7)
            cb.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def show_attribution(
    attr: torch.Tensor,
    image: torch.Tensor | np.ndarray | None = None,
    ax=None,
    signed: bool = False,
    how: str = "max_abs",
    percentile: float = 99.0,
    overlay: bool = False,
    title: str | None = None,
    alpha: float = 0.5,
):
    """Show one attribution map ``(C, H, W)`` (or an already aggregated ``(H, W)``) on ``ax`` and return the figure.

    Channels are aggregated with ``how`` (:func:`helpers.maps.aggregate_channels`), then
    :func:`helpers.maps.normalize_attribution` (``signed``, ``percentile``): signed maps use the diverging
    :data:`SIGNED_CMAP` in ``[-1, 1]`` (red: positive evidence), absolute maps the perceptually uniform
    :data:`UNSIGNED_CMAP` in ``[0, 1]``, so every panel drawn by it is on the same scale (value / its
    ``percentile``-th percentile of |value|) and one :func:`shared_colorbar` describes them all.

    Args:
        attr: one attribution (C, H, W) or map (H, W).
        image: the image, (3, H, W) or (H, W, 3) in [0, 1]; needed for ``overlay=True``, which blends the map over
            it with :func:`overlay_heatmap`.
        ax: the axes to draw on (default: a new 3 x 3 inch figure).
    Returns:
        The figure.
    """
    import matplotlib.pyplot as plt

    a = attr.detach().cpu()
    m = aggregate_channels(a, how) if a.ndim == 3 else a
    if m.ndim != 2:
        raise ValueError(f"show_attribution expects one map (C, H, W) or (H, W), got {tuple(attr.shape)}")
    m = normalize_attribution(m, signed=signed, percentile=percentile).numpy()
    if ax is None:
        fig, ax = plt.subplots(figsize=(3, 3))
    fig = ax.figure
    img = None
    if image is not None:
        img = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
            img = img.transpose(1, 2, 0)
        img = np.clip(img, 0, 1)
    if overlay:
        if img is None:
            raise ValueError("overlay=True needs the image")
        overlay_heatmap(img, m, ax=ax, alpha=alpha, cmap=SIGNED_CMAP if signed else UNSIGNED_CMAP, signed=signed,
                        limits=(-1.0, 1.0) if signed else (0.0, 1.0))
    elif signed:
        ax.imshow(m, cmap=SIGNED_CMAP, vmin=-1, vmax=1)
    else:
        ax.imshow(m, cmap=UNSIGNED_CMAP, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def shared_colorbar(fig: Any, axes: Any, limits: tuple[float, float] = (0.0, 1.0), cmap: str | None = None,
                    label: str = "map / its max", signed: bool = False):
    """One opaque colour bar for panels drawn with ``overlay_heatmap(..., limits=limits)`` (the same scale in every
    panel). ``axes``: the panels (any array or list of axes) the bar sits beside. Returns the colour bar."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize, TwoSlopeNorm

    lo, hi = limits
    if not lo < hi or (signed and not lo < 0.0 < hi):
        raise ValueError(f"limits must be (lo, hi) with lo < hi (signed: lo < 0 < hi), got {limits}")
    norm = TwoSlopeNorm(vmin=lo, vcenter=0.0, vmax=hi) if signed else Normalize(vmin=lo, vmax=hi)
    bar = ScalarMappable(norm=norm, cmap=cmap or (SIGNED_CMAP if signed else UNSIGNED_CMAP))
    axes_list = list(np.asarray(axes, dtype=object).ravel())
    cb = fig.colorbar(bar, ax=axes_list, shrink=0.85, pad=0.015, fraction=0.03)
    cb.set_label(label, fontsize=8)
    cb.ax.tick_params(labelsize=7)
    return cb


def plot_history(history: Any, ax: Any = None):
    """Training curves of a ``helpers.training.History``: loss (left axis) and accuracy (right axis) vs epoch.

    Also accepts a dict with the same keys (``epoch``, ``train_loss``, ``train_acc``, ``val_acc``). Returns the figure.
    """
    get = history.get if isinstance(history, Mapping) else (lambda k, d=None: getattr(history, k, d))
    epoch = list(get("epoch", []) or [])
    loss = list(get("train_loss", []) or [])
    if not epoch or len(loss) != len(epoch):
        raise ValueError(f"history needs equally long, non-empty 'epoch' and 'train_loss' (got {len(epoch)} and "
                         f"{len(loss)})")
    fig, ax = _new_ax(ax, figsize=(6, 3.5))
    (l1,) = ax.plot(epoch, loss, "o-", color="tab:blue", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    lines = [l1]
    for key, style, label in (("train_acc", "s--", "train acc"), ("val_acc", "^-", "val acc")):
        values = list(get(key, []) or [])
        if values and len(values) == len(epoch):
            color = "tab:green" if key == "train_acc" else "tab:red"
            (line,) = ax2.plot(epoch, values, style, label=label, color=color)
            lines.append(line)
    ax2.set_ylabel("accuracy")
    ax2.set_ylim(0, 1)
    ax.legend(lines, [ln.get_label() for ln in lines], loc="center right")
    ax.grid(alpha=0.3)
    return fig


def confusion_matrix_plot(y_true: Any, y_pred: Any, class_names: Sequence[str], ax: Any = None,
                          normalize: bool = True, title: str | None = None):
    """Confusion matrix (rows: true class, columns: predicted), row-normalised when ``normalize``. Returns the figure.

    ``y_true``, ``y_pred``: integer labels (N,) in ``0..len(class_names)-1``.
    """
    t = np.asarray(_numpy(y_true, "y_true")).reshape(-1)
    p = np.asarray(_numpy(y_pred, "y_pred")).reshape(-1)
    k = len(class_names)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred {p.size}")
    if t.size == 0:
        raise ValueError("no labels given")
    for name, v in (("y_true", t), ("y_pred", p)):
        if not np.issubdtype(v.dtype, np.integer) or v.min() < 0 or v.max() >= k:
            raise ValueError(f"{name} must be integer labels in 0..{k - 1}")
    cm = np.zeros((k, k), dtype=np.float64)
    np.add.at(cm, (t, p), 1)
    if normalize:
        cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = _new_ax(ax, figsize=(0.55 * k + 2.5, 0.55 * k + 2))
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(k), labels=class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    thresh = cm.max() / 2 if cm.max() > 0 else 0.5
    if k <= 20:
        for i in range(k):
            for j in range(k):
                txt = f"{cm[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
                ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > thresh else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    acc = float((t == p).mean())
    ax.set_title(title or f"accuracy {acc:.1%}")
    return fig
