"""Feature visualisation: optimise an input image so that a unit of a network responds strongly (notebook 06).

``from helpers import featvis as fv`` gives every name below; the package is split by concern, one module each:

* :mod:`.param` -- **parameterisations** (:class:`ImageParam`): the image is a function of free parameters, either
  one value per pixel (``"pixel"``) or a spectrum scaled by ``1 / frequency`` (``"fourier"``, Olah et al. 2017),
  optionally with decorrelated colours; a sigmoid keeps every pixel in (0, 1). ``ImageParam()`` returns
  (B, 3, H, W). The ``1 / f`` scale does two things: random parameters give an image whose spectrum falls like a
  natural image's (the parameters are *whitened* coordinates of natural images), and a unit step of a parameter at
  frequency f moves the image by ``1 / f``, so the optimiser's steps favour low frequencies (a preconditioner).
* :mod:`.transforms` -- :class:`Pad`, :class:`Jitter`, :class:`RandomScale`, :class:`RandomRotate`,
  :class:`Resize`: random, differentiable changes applied at every step, so that the image must work under small
  shifts, zooms and rotations ("transformation robustness"). Each takes (B, 3, H, W) and a ``torch.Generator``.
* :mod:`.regularizers` -- :func:`l2_penalty`, :func:`total_variation`, :func:`blur_penalty`: (B, 3, H, W) -> (B,).
* :mod:`.objectives` -- :class:`Objective`: :func:`channel`, :func:`neuron`, :func:`class_logit`,
  :func:`layer_l2` (DeepDream), :func:`direction`, :func:`diversity`, :func:`feature_match` (input reconstruction,
  Mahendran & Vedaldi 2015): functions of the recorded activations, (B,) scores to *maximise*; they add, subtract
  and scale (``channel(...) - 0.5 * diversity(...)``).
* :mod:`.loop` -- the loop :func:`render` (Adam on the parameters), one plain gradient-ascent step
  :func:`ascent_step` (exercise 6.2), :func:`record_activations` (a context manager whose forward hooks are
  removed on exit), and the measures :func:`evaluate`, :func:`transform_robustness`, :func:`high_frequency_fraction`.
* :mod:`.examples` -- **dataset examples**: :func:`top_k_examples` (exercise 6.3), :func:`dataset_examples`
  (or, for several channels from one forward pass, :func:`channel_maps` and :func:`examples_from_maps`),
  :func:`crop_examples`.
* :mod:`.lucent_adapter` -- **lucent** (torch-lucent 0.1.8): :func:`lucent_transforms` (its standard transforms
  with the ``random_scale`` reported to break on torch >= 2.1 replaced), :func:`lucent_render` (``render_vis`` with
  that list, its leaked hooks removed, seeded, cached per session), :func:`lucent_deepdream` and
  :func:`load_inceptionv1` (random weights with ``XAI_OFFLINE=1``).

Activations of token models (ViTs: (B, T, D)) are turned into maps (B, D, g, g) by :func:`to_spatial`, so the
channel and neuron objectives and the dataset examples work on both families.
"""

from __future__ import annotations

from .examples import (
    DatasetExamples,
    channel_maps,
    crop_examples,
    dataset_examples,
    examples_from_maps,
    top_k_examples,
)
from .loop import (
    RenderResult,
    ascent_step,
    evaluate,
    high_frequency_fraction,
    record_activations,
    render,
    transform_robustness,
)
from .lucent_adapter import (
    _closing_lucent_hooks,
    _lucent_random_scale,
    inceptionv1_preprocess,
    load_inceptionv1,
    lucent_deepdream,
    lucent_render,
    lucent_transforms,
)
from .objectives import (
    Objective,
    channel,
    class_logit,
    direction,
    diversity,
    feature_match,
    layer_l2,
    neuron,
    to_spatial,
)
from .param import IMAGENET_COLOR_SQRT, ImageParam, color_sqrt
from .regularizers import _check_images, blur_penalty, l2_penalty, total_variation
from .transforms import Jitter, Pad, RandomRotate, RandomScale, Resize, standard_transforms

__all__ = [
    "IMAGENET_COLOR_SQRT",
    "color_sqrt",
    "ImageParam",
    "Pad",
    "Jitter",
    "RandomScale",
    "RandomRotate",
    "Resize",
    "standard_transforms",
    "l2_penalty",
    "total_variation",
    "blur_penalty",
    "to_spatial",
    "Objective",
    "channel",
    "neuron",
    "class_logit",
    "layer_l2",
    "direction",
    "diversity",
    "feature_match",
    "record_activations",
    "evaluate",
    "transform_robustness",
    "high_frequency_fraction",
    "RenderResult",
    "render",
    "ascent_step",
    "top_k_examples",
    "DatasetExamples",
    "channel_maps",
    "examples_from_maps",
    "dataset_examples",
    "crop_examples",
    "lucent_transforms",
    "lucent_render",
    "lucent_deepdream",
    "load_inceptionv1",
    "inceptionv1_preprocess",
]

# private names other code uses (tests/test_validation.py, tests/test_featvis.py, tools/benchmark_featvis.py)
_PRIVATE_REEXPORTS = (_check_images, _closing_lucent_hooks, _lucent_random_scale)
