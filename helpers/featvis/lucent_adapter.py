"""lucent (torch-lucent 0.1.8) on current torch (notebook 06): its standard transforms with the broken
``random_scale`` replaced, ``render_vis`` seeded, cached and without its leaked hooks, a DeepDream objective, and
lucent's InceptionV1 with random weights offline. ``lucent`` itself is imported only inside the functions."""

from __future__ import annotations

import contextlib
import math
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import env
from .loop import _frozen

__all__ = ["lucent_transforms", "lucent_render", "lucent_deepdream", "load_inceptionv1", "inceptionv1_preprocess"]

Tensor = torch.Tensor


def _lucent_random_scale(scales: Sequence[float]) -> Callable[[Tensor], Tensor]:
    """lucent's ``transform.random_scale`` with Python ints for the size (lucent passes numpy ints to
    ``nn.Upsample``, reported as a TypeError on torch >= 2.1; torch 2.14.1 CPU accepts them) and otherwise the
    same behaviour (numpy's global random state, ``align_corners=True``, the same padding call)."""

    def inner(image_t: Tensor) -> Tensor:
        scale = float(np.random.choice(scales))
        shp = image_t.shape[2:]
        size = [int(math.ceil(scale * d)) for d in shp]
        pad_x = max(0, int(math.ceil((shp[1] - size[1]) / 2)))
        pad_y = max(0, int(math.ceil((shp[0] - size[0]) / 2)))
        out = F.interpolate(image_t, size=size, mode="bilinear", align_corners=True)
        return F.pad(out, [pad_y, pad_x] * 2)

    return inner


def lucent_transforms(size: int = 128) -> list[Callable[[Tensor], Tensor]]:
    """lucent's ``transform.standard_transforms`` (pad 12, jitter 8, random_scale 0.9..1.1, random_rotate
    -10..10, jitter 4) with the broken ``random_scale`` replaced by :func:`_lucent_random_scale`; the pixel
    amounts scaled by ``size / 128`` like :func:`standard_transforms` (at 128 px exactly lucent's list)."""
    from lucent.optvis import transform

    f = size / 128
    px = [max(1, round(v * f)) for v in (12, 8, 4)]
    return [
        transform.pad(px[0], mode="constant", constant_value=0.5),
        transform.jitter(max(2, px[1])),  # lucent asserts d > 1
        _lucent_random_scale([1 + (i - 5) / 50.0 for i in range(11)]),
        transform.random_rotate(list(range(-10, 11)) + 5 * [0]),
        transform.jitter(max(2, px[2])),
    ]


#: Renders of this session: model -> {key: images}. Weak on the model, so a deleted model takes its renders along
#: (and a new model that happens to get the same ``id`` cannot be served an old model's images).
_LUCENT_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple, np.ndarray]] = weakref.WeakKeyDictionary()


def _cache_key(objective: Any, key: str | None, transforms: Any, *args: Any) -> tuple | None:
    """The cache key of one :func:`lucent_render` call, or None (not cacheable). A string objective is its own key;
    ``key`` is the caller's name for an objective object; otherwise the objective OBJECT itself (identity): never its
    ``description``, which lucent writes without signs and weights (``channel`` and ``-channel``, or two weights of
    a diversity term, share one description). The transform list likewise by the identity of its callables."""
    if isinstance(objective, str):
        obj_key: tuple = ("string", objective)
    elif key is not None:
        obj_key = ("key", str(key))
    else:
        try:
            hash(objective)
        except TypeError:
            return None
        obj_key = ("object", objective)
    if transforms is None or isinstance(transforms, str):
        tf_key: Any = transforms
    else:
        tf_key = tuple(transforms)
    return (obj_key, tf_key, *args)


@contextlib.contextmanager
def _closing_lucent_hooks() -> Iterator[None]:
    """``render_vis`` registers a forward hook on EVERY module of the model (``ModuleHook``) and never removes them:
    they pile up with each call. While open, every ``ModuleHook`` lucent creates is recorded and closed on exit."""
    from lucent.optvis import render as lrender

    created = []
    original = lrender.ModuleHook

    class _Recorded(original):  # type: ignore[misc, valid-type]
        def __init__(self, module: nn.Module) -> None:
            super().__init__(module)
            created.append(self)

    lrender.ModuleHook = _Recorded
    try:
        yield
    finally:
        lrender.ModuleHook = original
        for h in created:
            h.close()


def lucent_render(model: nn.Module, objective: Any, size: int = 128, steps: int = 512, batch: int = 1,
                  fft: bool = True, decorrelate: bool = True, lr: float = 0.05,
                  transforms: Sequence[Callable[[Tensor], Tensor]] | str | None = "standard",
                  fixed_image_size: int | None = None, preprocess: bool = True, seed: int = 0,
                  cache: bool = True, key: str | None = None) -> np.ndarray:
    """``lucent.optvis.render.render_vis`` made to work on the installed torch and to leave the model as it was.

    ``objective``: a lucent objective or its string form (``"mixed4a:476"``); ``transforms="standard"``:
    :func:`lucent_transforms` for ``size`` (lucent's own default list is reported to raise a TypeError on torch >= 2.1);
    ``None``: no transforms. ``fixed_image_size``: the size the model sees (lucent upsamples anything below 224 px to
    224 unless it is given; pass ``size`` to skip that). Seeds numpy and torch (lucent draws from their global
    generators), removes the forward hooks ``render_vis`` leaves on every module, shows nothing, and caches the
    result for the session (``cache=False`` to recompute). The cache key is the model object, every argument and
    the objective: a string by its text, an objective object by its identity (the same object again hits the cache;
    a newly built one, even an equal one, renders anew), or by ``key`` if you give one -- then YOU promise that
    equal keys mean equal objectives. Never by lucent's ``description``, which drops signs and weights.
    Returns float images (B, H, W, 3) in [0, 1].
    """
    from lucent.optvis import param as lparam
    from lucent.optvis import render as lrender

    ck = _cache_key(objective, key, transforms, size, steps, batch, fft, decorrelate, lr, fixed_image_size,
                    preprocess, seed) if cache else None
    store = _LUCENT_CACHE.setdefault(model, {}) if ck is not None else None
    if store is not None and ck in store:
        return store[ck].copy()
    if transforms == "standard":
        chain: list = lucent_transforms(size)
    elif transforms is None:
        chain = []
    elif isinstance(transforms, str):
        raise ValueError(f"transforms must be 'standard', None or a list, got {transforms!r}")
    else:
        chain = list(transforms)
    np.random.seed(seed)
    torch.manual_seed(seed)
    model.eval()
    with _closing_lucent_hooks(), _frozen(model), warnings.catch_warnings():
        # below 224 px InceptionV1's last pooling layer fails; render_vis catches that and warns once per call
        warnings.filterwarnings("ignore", message="Some layers could not be computed")
        images = lrender.render_vis(
            model, objective, param_f=lambda: lparam.image(size, batch=batch, fft=fft, decorrelate=decorrelate),
            optimizer=lambda params: torch.optim.Adam(params, lr=lr), transforms=chain, thresholds=(steps,),
            preprocess=preprocess, progress=False, show_image=False, fixed_image_size=fixed_image_size,
        )
    out = np.asarray(images[-1], dtype=np.float32)
    if store is not None:
        store[ck] = out.copy()
    return out


def lucent_deepdream(layer: str, batch: int | None = None) -> Any:
    """A lucent objective for DeepDream (lucent 0.1.8 has none): minus the mean squared activation of ``layer``
    (lucent minimises), the counterpart of :func:`layer_l2`. ``batch=b``: only image b of the batch (as lucent's
    ``channel(..., batch=b)``), so that one render can dream at several depths, one per image."""
    from lucent.optvis import objectives

    def inner(T: Callable[[str], Tensor]) -> Tensor:
        a = T(layer)
        return -((a if batch is None else a[batch]) ** 2).mean()

    where = "" if batch is None else f" batch {batch}"
    return objectives.Objective(inner, name=f"deepdream {layer}{where}", description=f"DeepDream [{layer}]{where}")


def inceptionv1_preprocess(x: Tensor) -> Tensor:
    """[0, 1] pixels -> the input range of Lucid's TensorFlow InceptionV1, [-117, 138] (what lucent applies)."""
    return x * 255 - 117


def load_inceptionv1(device: torch.device | str | None = None, seed: int = 0) -> tuple[nn.Module, bool]:
    """lucent's InceptionV1 (GoogLeNet as trained for Lucid) in eval mode and whether it has its pretrained weights.

    The weights download from GitHub on first use (cached by ``torch.hub``). With ``XAI_OFFLINE=1`` nothing is
    downloaded: the model gets RANDOM weights (seeded) and a WARNING says so -- its visualisations then show what an
    untrained network responds to, not what InceptionV1 learned. A failed download raises a RuntimeError."""
    from lucent.modelzoo import inceptionv1

    from ..models import download_error, warn_random

    if env.offline():
        torch.manual_seed(seed)
        model = inceptionv1(pretrained=False)
        warn_random("inceptionv1")
        pretrained = False
    else:
        try:
            model = inceptionv1(pretrained=True)
        except (OSError, RuntimeError) as exc:  # urllib errors, a truncated file
            raise download_error("inceptionv1", exc) from exc
        pretrained = True
    if device is not None:
        model.to(device)
    return model.eval(), pretrained
