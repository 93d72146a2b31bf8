"""The course's ImageNet models, each with its own preprocessing, in one call.

>>> m = load_model("resnet50")              # LoadedModel: .model (eval), .preprocess, .input_size, .mean, .std ...
>>> x = m.preprocess(photo)                  # HWC uint8 / PIL / path -> float (3, 224, 224), normalised
>>> predict_topk(m, x)                       # [("tabby", 0.61), ...]

CNNs come from torchvision (weights enums), ViTs from timm (``pretrained_cfg``). The preprocessing parameters
(resize, crop, interpolation, mean, std) are the ones the weights were trained with, read from torchvision's
``weights.transforms()`` and timm's ``resolve_data_config`` (tests check the result equals theirs).

Offline: with ``XAI_OFFLINE=1`` nothing is downloaded; every model gets RANDOM weights (seeded, so runs repeat) and a
WARNING is printed -- explanations of such a model are meaningless. Without the flag, a failed download raises a
``RuntimeError`` that says what to do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from . import env
from .checkpoints import load_checkpoint
from .data import imagenet_classes, load_image

__all__ = [
    "MODELS",
    "LoadedModel",
    "load_model",
    "to_batch",
    "predict_topk",
    "disable_fused_attention",
    "list_models",
    "download_error",
    "warn_random",
    "load_checkpoint",
]


@dataclass(frozen=True)
class _Spec:
    family: str  # "cnn" or "vit"
    source: str  # "torchvision" or "timm"
    builder: str  # torchvision builder function / timm model name
    weights: str = ""  # torchvision weights enum member, e.g. "ResNet50_Weights.IMAGENET1K_V2"
    offline_kwargs: dict = field(default_factory=dict)  # builder kwargs that give the pretrained architecture
    description: str = ""
    create_kwargs: dict = field(default_factory=dict)  # timm.create_model kwargs, with and without weights


#: name -> how to build it. ``offline_kwargs`` make the random-weight model the same architecture as the pretrained
#: one (torchvision switches these on when it loads weights).
MODELS: dict[str, _Spec] = {
    "resnet50": _Spec("cnn", "torchvision", "resnet50", "ResNet50_Weights.IMAGENET1K_V2",
                      description="ResNet-50 (He et al. 2016), 25.6 M parameters, 80.9 % top-1"),
    "resnet18": _Spec("cnn", "torchvision", "resnet18", "ResNet18_Weights.IMAGENET1K_V1",
                      description="ResNet-18 (He et al. 2016), 11.7 M parameters, 69.8 % top-1; 5x faster than "
                      "ResNet-50 on a CPU (perturbation methods: notebook 05)"),
    "vgg16": _Spec("cnn", "torchvision", "vgg16", "VGG16_Weights.IMAGENET1K_V1",
                   description="VGG-16 (Simonyan & Zisserman 2015), 138 M parameters, 71.6 % top-1"),
    "inception_v3": _Spec("cnn", "torchvision", "inception_v3", "Inception_V3_Weights.IMAGENET1K_V1",
                          {"transform_input": True, "aux_logits": True, "init_weights": True},
                          "Inception-v3 (Szegedy et al. 2016), 299 px input, 27.2 M parameters, 77.3 % top-1"),
    "googlenet": _Spec("cnn", "torchvision", "googlenet", "GoogLeNet_Weights.IMAGENET1K_V1",
                       {"transform_input": True, "aux_logits": False, "init_weights": True},
                       "GoogLeNet / Inception-v1 (Szegedy et al. 2015), 6.6 M parameters, 69.8 % top-1"),
    "deit_tiny": _Spec("vit", "timm", "deit_tiny_patch16_224",
                       description="DeiT-Tiny (Touvron et al. 2021), 16x16 patches, 5.7 M parameters, 72.2 % top-1"),
    "deit_tiny_distilled": _Spec("vit", "timm", "deit_tiny_distilled_patch16_224",
                                 description="DeiT-Tiny distilled: [CLS] + distillation token, 5.9 M params, 74.5 %"),
    "vit_b16": _Spec("vit", "timm", "vit_base_patch16_224",
                     description="ViT-B/16 (Dosovitskiy et al. 2021; AugReg2 IN-21k -> IN-1k), 86.6 M params, 85.1 %"),
    # notebook 10: DINOv2 (self-supervised, no classifier head) without and with 4 register tokens (Darcet et al.
    # 2024), at 224 px (timm resamples the position embeddings of the 518 px weights)
    "dinov2_small": _Spec("vit", "timm", "vit_small_patch14_dinov2.lvd142m", create_kwargs={"img_size": 224},
                          description="DINOv2 ViT-S/14 (Oquab et al. 2024), 22 M params, no registers, no head"),
    "dinov2_small_reg": _Spec("vit", "timm", "vit_small_patch14_reg4_dinov2.lvd142m", create_kwargs={"img_size": 224},
                              description="DINOv2 ViT-S/14 with 4 registers (Darcet et al. 2024), no head"),
    "dinov2_base": _Spec("vit", "timm", "vit_base_patch14_dinov2.lvd142m", create_kwargs={"img_size": 224},
                         description="DINOv2 ViT-B/14 (Oquab et al. 2024), 86 M params, no registers, no head"),
    "dinov2_base_reg": _Spec("vit", "timm", "vit_base_patch14_reg4_dinov2.lvd142m", create_kwargs={"img_size": 224},
                             description="DINOv2 ViT-B/14 with 4 registers (Darcet et al. 2024), no head"),
}


@dataclass
class LoadedModel:
    """An ImageNet model with everything needed to feed it.

    * ``model``: the ``nn.Module`` in eval mode; input (B, 3, S, S) normalised, output logits (B, 1000).
    * ``preprocess(image) -> (3, S, S)``: HWC uint8 array / PIL image / path / tensor -> resized, centre-cropped,
      normalised float tensor (exactly the transform the weights were trained with).
    * ``input_size`` S (224, or 299 for Inception-v3); ``mean``/``std`` the normalisation; ``pretrained`` whether
      real weights were loaded; ``family`` "cnn" or "vit"; for ViTs ``num_prefix_tokens`` (1 = [CLS], 2 = [CLS] +
      distillation token) and ``patch_size``; ``target_layer`` the usual Grad-CAM layer (the rectified output
      of the last conv block: ResNet ``layer4[-1]``, VGG-16 conv5_3's ReLU ``features[29]``, ...; for ViTs the
      last block's ``norm1``, whose tokens need a reshape).
    """

    name: str
    model: nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pretrained: bool
    family: str
    num_prefix_tokens: int = 0
    patch_size: int | None = None
    resize_size: int = 0
    interpolation: str = "bilinear"
    target_layer: nn.Module | None = None
    description: str = ""

    @property
    def classes(self) -> list[str]:
        """The 1000 ImageNet class names (index -> name)."""
        return imagenet_classes()

    @property
    def grid_size(self) -> int | None:
        """ViTs: patches per side (14 for 224 px and 16 px patches); ``None`` for CNNs."""
        return None if self.patch_size is None else self.input_size // self.patch_size

    def pixels(self, image: Any) -> torch.Tensor:
        """The resize + centre crop of :attr:`preprocess` without normalisation: float (3, S, S) in [0, 1]."""
        return _pixels(image, self.resize_size, self.input_size, self.interpolation)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] pixels (3, S, S) or (B, 3, S, S) -> model input (same shape)."""
        from .data import normalize

        return normalize(x, self.mean, self.std)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model input (3, S, S) or (B, 3, S, S) -> [0, 1] pixels (not clipped)."""
        from .data import denormalize

        return denormalize(x, self.mean, self.std)


def _pixels(image: Any, resize_size: int, crop_size: int, interpolation: str) -> torch.Tensor:
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    pil = image if isinstance(image, Image.Image) and image.mode == "RGB" else Image.fromarray(load_image(image))
    mode = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}[interpolation]
    pil = TF.resize(pil, [resize_size], interpolation=mode, antialias=True)
    pil = TF.center_crop(pil, [crop_size, crop_size])
    return TF.pil_to_tensor(pil).float() / 255.0


def _make_preprocess(resize_size: int, crop_size: int, interpolation: str, mean, std) -> Callable[[Any], torch.Tensor]:
    from .data import normalize

    def preprocess(image: Any) -> torch.Tensor:
        """image (HWC uint8 array / PIL / path / tensor) -> normalised float tensor (3, S, S)."""
        return normalize(_pixels(image, resize_size, crop_size, interpolation), mean, std)

    return preprocess


def download_error(name: str, exc: BaseException) -> RuntimeError:
    """The error to raise when the pretrained weights of model ``name`` could not be downloaded (``exc``): says
    how to fix it, or how to go on with random weights (``XAI_OFFLINE=1``).

    Args:
        name: the model's name, e.g. ``"resnet50"``.
        exc: the download error.
    Returns:
        A ``RuntimeError`` to ``raise ... from exc``.
    """
    return RuntimeError(
        f"could not download the pretrained weights of {name!r} ({type(exc).__name__}: {exc}). Fixes: connect to the "
        "internet (on Colab: check the runtime is connected) and run the cell again; or, to continue without "
        "pretrained weights, set XAI_OFFLINE=1 (os.environ['XAI_OFFLINE'] = '1') to get RANDOM weights -- the "
        "explanations are then meaningless."
    )


def warn_random(name: str) -> None:
    """Print that model ``name`` has random weights (``XAI_OFFLINE=1``), so its explanations mean nothing."""
    print(f"WARNING (XAI_OFFLINE=1): {name!r} uses RANDOM weights (nothing downloaded); its predictions and "
          "explanations are meaningless. Unset XAI_OFFLINE with internet access to load the pretrained weights.")


def _torchvision(name: str, spec: _Spec, use_weights: bool) -> tuple[nn.Module, dict[str, Any]]:
    import torchvision.models as tvm

    enum_name, member = spec.weights.split(".")
    weights = getattr(getattr(tvm, enum_name), member)
    tr = weights.transforms()
    cfg = {"resize_size": int(tr.resize_size[0]), "input_size": int(tr.crop_size[0]),
           "interpolation": tr.interpolation.value, "mean": tuple(tr.mean), "std": tuple(tr.std)}
    builder = getattr(tvm, spec.builder)
    if use_weights:
        try:
            model = builder(weights=weights)
        except OSError as exc:  # urllib.error.URLError, socket errors, disk errors: no weights
            raise download_error(name, exc) from exc
    else:
        model = builder(weights=None, **spec.offline_kwargs)
    return model, cfg


def _timm(name: str, spec: _Spec, use_weights: bool) -> tuple[nn.Module, dict[str, Any]]:
    import timm
    from timm.data import resolve_data_config

    if use_weights:
        try:
            model = timm.create_model(spec.builder, pretrained=True, **spec.create_kwargs)
        except OSError as exc:  # huggingface_hub's LocalEntryNotFoundError, requests' ConnectionError, ...
            raise download_error(name, exc) from exc
    else:
        model = timm.create_model(spec.builder, pretrained=False, **spec.create_kwargs)
    dc = resolve_data_config(model=model)
    size = int(spec.create_kwargs.get("img_size", dc["input_size"][-1]))  # a model built for another size
    if dc.get("crop_mode", "center") != "center":
        raise NotImplementedError(f"timm crop_mode {dc['crop_mode']!r} is not supported")
    cfg = {"resize_size": math.floor(size / dc["crop_pct"]), "input_size": size, "interpolation": dc["interpolation"],
           "mean": tuple(dc["mean"]), "std": tuple(dc["std"])}
    return model, cfg


def _target_layer(name: str, model: nn.Module) -> nn.Module:
    if name in ("resnet50", "resnet18"):
        return model.layer4[-1]
    if name == "vgg16":
        # conv5_3's ReLU, i.e. the rectified feature map A >= 0 (as pytorch-grad-cam's model.features[-2/-1]):
        # the conv output itself (features[28]) still holds the negative pre-activations of switched-off units,
        # which would enter sum_k alpha_k A_k. Made not in-place so that hooks see a tensor of its own.
        model.features[29].inplace = False
        return model.features[29]
    if name == "googlenet":
        return model.inception5b
    if name == "inception_v3":
        return model.Mixed_7c
    return model.blocks[-1].norm1  # timm ViTs


def load_model(name: str, pretrained: bool = True, device: str | torch.device | None = None) -> LoadedModel:
    """Build one of the course's ImageNet models (:data:`MODELS`) with its preprocessing. Eval mode.

    ``pretrained=True`` downloads the weights (cached by torch hub / Hugging Face) unless ``XAI_OFFLINE=1``, which
    gives seeded RANDOM weights and prints a WARNING. ``pretrained=False`` always gives random weights (seed 0).
    Raises ``ValueError`` for an unknown name and ``RuntimeError`` (with the fix) when the download fails.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    spec = MODELS[name]
    use_weights = pretrained and not env.offline()
    if use_weights:
        model, cfg = (_torchvision if spec.source == "torchvision" else _timm)(name, spec, True)
    else:
        if pretrained:
            warn_random(name)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model, cfg = (_torchvision if spec.source == "torchvision" else _timm)(name, spec, False)
    model.eval()
    if device is not None:
        model.to(device)
    is_vit = spec.family == "vit"
    return LoadedModel(
        name=name,
        model=model,
        preprocess=_make_preprocess(cfg["resize_size"], cfg["input_size"], cfg["interpolation"], cfg["mean"],
                                    cfg["std"]),
        input_size=cfg["input_size"],
        mean=cfg["mean"],
        std=cfg["std"],
        pretrained=use_weights,
        family=spec.family,
        num_prefix_tokens=int(getattr(model, "num_prefix_tokens", 0)) if is_vit else 0,
        patch_size=int(model.patch_embed.patch_size[0]) if is_vit else None,
        resize_size=cfg["resize_size"],
        interpolation=cfg["interpolation"],
        target_layer=_target_layer(name, model),
        description=spec.description,
    )


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def to_batch(loaded: LoadedModel, images: Any, device: str | torch.device | None = None) -> torch.Tensor:
    """Preprocess one image or a list of images into a batch (B, 3, S, S) on ``device`` (default: the model's).

    Each image may be anything :attr:`LoadedModel.preprocess` accepts, or a (B, H, W, 3) uint8 array. A float
    tensor (3, S, S) or (B, 3, S, S) is taken as ALREADY preprocessed (normalised) and passed through -- so do not
    pass the [0, 1] output of :meth:`LoadedModel.pixels` here; normalise it first.
    """
    device = _device_of(loaded.model) if device is None else torch.device(device)
    s = loaded.input_size
    if isinstance(images, torch.Tensor) and images.is_floating_point() and images.shape[-3:] == (3, s, s) \
            and images.dim() in (3, 4):
        return (images.unsqueeze(0) if images.dim() == 3 else images).to(device)
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("to_batch got an empty list of images")
        items = [to_batch(loaded, im, device="cpu") for im in images]
        return torch.cat(items).to(device)
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return torch.cat([to_batch(loaded, im, device="cpu") for im in images]).to(device)
    return loaded.preprocess(images).unsqueeze(0).to(device)


@torch.no_grad()
def predict_topk(loaded: LoadedModel, x: Any, k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most probable ImageNet classes of ONE image as ``[(class name, probability), ...]``, best first.

    ``x``: a preprocessed (3, S, S) or (1, 3, S, S) tensor, or a raw image (array / PIL / path).
    """
    batch = to_batch(loaded, x)
    if batch.shape[0] != 1:
        raise ValueError(f"predict_topk takes one image, got a batch of {batch.shape[0]}; loop over the images")
    if not 1 <= k <= 1000:
        raise ValueError(f"k must be in 1..1000, got {k}")
    probs = loaded.model(batch).float().softmax(-1)[0].cpu()
    top = probs.topk(k)
    names = imagenet_classes()
    return [(names[i], float(p)) for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)]


def disable_fused_attention(model: nn.Module) -> int:
    """Make timm attention compute ``softmax(q k^T / sqrt(d))`` explicitly instead of the fused SDPA kernel.

    Hooks on ``attn_drop`` (attention rollout, attention maps) only see the attention matrix on the explicit path.
    Sets ``fused_attn = False`` on every module that has the attribute; returns how many were changed.
    """
    count = 0
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
            count += 1
    return count


def list_models() -> Sequence[str]:
    """The names :func:`load_model` accepts."""
    return tuple(MODELS)
