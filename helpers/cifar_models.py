"""The two small CIFAR-10 models the course trains and ships: a Vision Transformer and a ResNet-style CNN.

Both take images of shape (B, 3, 32, 32) normalised with ``helpers.data.CIFAR10_MEAN`` / ``CIFAR10_STD`` and
return logits of shape (B, 10).

* :class:`CourseViT` -- patch size 4 (an 8x8 token grid), a CLS token, learned positional embeddings and pre-norm
  transformer blocks. The tokenizer is the classic linear patch embedding (a strided convolution), a small
  convolutional stem that still produces one token per 4x4 image patch (the shipped ViT), or a small ResNet stem
  (a "hybrid" ViT, for the training benchmark; its tokens see larger, overlapping windows). Each attention module
  can record its attention probabilities and q/k/v (:func:`helpers.attention.record`, also named
  ``helpers.attention.record_attention``), which notebook 02 visualises.
* :class:`CourseCNN` -- a ResNet-style network whose last convolutional features (B, 256, 8, 8) are globally
  average pooled before one linear layer, the architecture CAM needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .validation import check_images

__all__ = [
    "ViTConfig",
    "CNNConfig",
    "CourseViT",
    "CourseCNN",
    "build_model",
]


@dataclass
class ViTConfig:
    """Hyper-parameters of :class:`CourseViT`. ``tokenizer`` is ``"linear"``, ``"conv"`` or ``"resnet"`` (a hybrid)."""

    image_size: int = 32
    patch_size: int = 4
    in_chans: int = 3
    num_classes: int = 10
    dim: int = 192
    depth: int = 6
    heads: int = 4
    mlp_ratio: float = 2.0
    tokenizer: str = "conv"
    stem_channels: tuple[int, ...] = (64, 128)
    dropout: float = 0.0
    kind: str = field(default="vit", init=False)


@dataclass
class CNNConfig:
    """Hyper-parameters of :class:`CourseCNN`: the widths of the stem and the three stages."""

    in_chans: int = 3
    num_classes: int = 10
    widths: tuple[int, int, int, int] = (32, 64, 128, 256)
    kind: str = field(default="cnn", init=False)


# --------------------------------------------------------------------------------------------------------------
# Vision Transformer
# --------------------------------------------------------------------------------------------------------------


class LinearPatchEmbed(nn.Module):
    """Cut the image into non-overlapping p x p patches and project each one linearly to ``dim``.

    A linear map of a flattened patch is exactly a convolution with kernel = stride = p.
    (B, C, H, W) -> (B, (H/p)*(W/p), dim), tokens in row-major order.
    """

    def __init__(self, patch_size: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class ConvTokenizer(nn.Module):
    """A convolutional stem that downsamples by ``patch_size`` (a power of two) with stride-2 3x3 convolutions.

    Token (i, j) still maps to the 4x4 patch (i, j) (rows 4i..4i+3): with three convolutions (two stride-2) its
    receptive field is the 9x9 window of rows and columns 4i-4 .. 4i+4, i.e. the patch plus its neighbours, shifted
    about 1.5 px up and to the left of the patch centre by the stride-2 padding-1 convolutions. (The tokenizer of the
    course ViT before it became a hybrid; the shipped ``vit_cifar10`` uses :class:`ResNetTokenizer`.)
    (B, C, H, W) -> (B, (H/p)*(W/p), dim).
    """

    def __init__(self, patch_size: int, in_chans: int, dim: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        n_down = int(math.log2(patch_size))
        if 2**n_down != patch_size:
            raise ValueError(f"the conv tokenizer needs a power-of-two patch size, got {patch_size}")
        widths = [in_chans, *channels, dim]
        layers: list[nn.Module] = []
        n_convs = len(widths) - 1
        for i in range(n_convs):
            stride = 2 if i >= n_convs - n_down else 1
            last = i == n_convs - 1
            layers.append(nn.Conv2d(widths[i], widths[i + 1], 3, stride=stride, padding=1, bias=last))
            if not last:
                layers += [nn.BatchNorm2d(widths[i + 1]), nn.GELU()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(2).transpose(1, 2)


class ResNetTokenizer(nn.Module):
    """A small ResNet stem (the shipped hybrid ViT's tokenizer): one token per 4x4 patch (an 8x8 grid on 32 px).

    conv 3x3 -> ``channels[0]`` at full resolution; conv 3x3 -> ``channels[1]`` + 2x2 max-pool; a residual block of two
    3x3 convs; conv 3x3 -> ``dim`` + 2x2 max-pool (each conv followed by BatchNorm + GELU). Token (i, j) is centred on
    patch (i, j) but sees a 20x20 pixel window (rows 4i-8 .. 4i+11), so neighbouring tokens overlap much more than
    with :class:`ConvTokenizer`'s 9x9 windows: it trades locality of the tokens for a CNN's fast learning.
    (B, C, H, W) -> (B, (H/4)*(W/4), dim).
    """

    def __init__(self, patch_size: int, in_chans: int, dim: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        if patch_size != 4:
            raise ValueError(f"the resnet tokenizer downsamples by exactly 4 (two max-pools), got {patch_size=}")
        if len(channels) != 2:
            raise ValueError(f"the resnet tokenizer needs two stem widths, got stem_channels={channels}")
        c0, c1 = channels

        def conv(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU()]

        self.stem = nn.Sequential(*conv(in_chans, c0), *conv(c0, c1), nn.MaxPool2d(2))
        self.res = nn.Sequential(*conv(c1, c1), *conv(c1, c1))
        self.out = nn.Sequential(*conv(c1, dim), nn.MaxPool2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = self.out(h + self.res(h))
        return h.flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention. (B, T, dim) -> (B, T, dim).

    ``softmax(q k^T / sqrt(d)) v`` per head. While :func:`helpers.attention.record` records it, :attr:`recording`
    is set: the attention is then computed explicitly and the probabilities (B, heads, T, T) and q, k, v
    (B, heads, T, d) are handed to ``recording(attn, q, k, v)``; otherwise the fused
    ``F.scaled_dot_product_attention`` kernel is used.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} is not divisible by heads={heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout
        self.recording: Callable[..., None] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, T, head_dim)
        if self.recording is None:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        else:
            attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
            self.recording(attn, q, k, v)
            out = attn @ v
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x)). (B, T, dim) -> (B, T, dim)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class CourseViT(nn.Module):
    """The course Vision Transformer. (B, 3, 32, 32) -> logits (B, 10).

    Tokens: index 0 is the CLS token, indices 1..64 the 8x8 patch grid in row-major order
    (``num_prefix_tokens = 1``). The head reads the final CLS token after a LayerNorm.
    """

    num_prefix_tokens = 1

    def __init__(self, config: ViTConfig | None = None) -> None:
        super().__init__()
        cfg = config or ViTConfig()
        self.config = cfg
        if cfg.image_size % cfg.patch_size:
            raise ValueError("image_size must be a multiple of patch_size")
        self.grid_size = cfg.image_size // cfg.patch_size
        num_patches = self.grid_size**2
        if cfg.tokenizer == "linear":
            self.patch_embed: nn.Module = LinearPatchEmbed(cfg.patch_size, cfg.in_chans, cfg.dim)
        elif cfg.tokenizer == "conv":
            self.patch_embed = ConvTokenizer(cfg.patch_size, cfg.in_chans, cfg.dim, tuple(cfg.stem_channels))
        elif cfg.tokenizer == "resnet":
            self.patch_embed = ResNetTokenizer(cfg.patch_size, cfg.in_chans, cfg.dim, tuple(cfg.stem_channels))
        else:
            raise ValueError(f"unknown tokenizer {cfg.tokenizer!r}; use 'linear', 'conv' or 'resnet'")
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, cfg.dim))
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(_init_vit_weights)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Embed an image batch: (B, 3, H, W) -> (B, 1 + N, dim), CLS first, positions added."""
        check_images(x, channels=self.config.in_chans)
        t = self.patch_embed(x)
        cls = self.cls_token.expand(t.shape[0], -1, -1)
        return torch.cat([cls, t], dim=1) + self.pos_embed

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> final normalised token states (B, 1 + N, dim)."""
        t = self.tokens(x)
        for block in self.blocks:
            t = block(t)
        return self.norm(t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x)[:, 0])


def _init_vit_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------------------------
# CNN
# --------------------------------------------------------------------------------------------------------------


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Residual(nn.Module):
    """x + f(x) with f two 3x3 conv-BN-ReLU layers. (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn(channels, channels), _conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class CourseCNN(nn.Module):
    """A ResNet-style CIFAR-10 CNN (a half-width ResNet-9). (B, 3, 32, 32) -> logits (B, 10).

    ``features`` maps the image to the last convolutional feature map (B, 256, 8, 8); ``pool`` is global average
    pooling and ``fc`` the linear classifier, so ``CAM_c = sum_k fc.weight[c, k] * features[:, k]``.
    ``model.features[-1]`` is the usual Grad-CAM target layer.
    """

    def __init__(self, config: CNNConfig | None = None) -> None:
        super().__init__()
        cfg = config or CNNConfig()
        self.config = cfg
        w0, w1, w2, w3 = cfg.widths
        self.features = nn.Sequential(
            _conv_bn(cfg.in_chans, w0),  # 32x32
            nn.Sequential(_conv_bn(w0, w1), nn.MaxPool2d(2)),  # 16x16
            Residual(w1),
            nn.Sequential(_conv_bn(w1, w2), nn.MaxPool2d(2)),  # 8x8
            _conv_bn(w2, w3),
            Residual(w3),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w3, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, channels=self.config.in_chans)
        return self.fc(self.pool(self.features(x)).flatten(1))


def build_model(config: ViTConfig | CNNConfig | dict) -> nn.Module:
    """Build a course model from its config (or the config's ``asdict`` form, as stored in checkpoints)."""
    if isinstance(config, dict):
        cfg = dict(config)
        kind = cfg.pop("kind", None)
        if kind == "vit":
            if "stem_channels" in cfg:
                cfg["stem_channels"] = tuple(cfg["stem_channels"])
            return CourseViT(ViTConfig(**cfg))
        if kind == "cnn":
            cfg["widths"] = tuple(cfg["widths"])
            return CourseCNN(CNNConfig(**cfg))
        raise ValueError(f"unknown model kind {kind!r} in config; expected 'vit' or 'cnn'")
    if isinstance(config, ViTConfig):
        return CourseViT(config)
    if isinstance(config, CNNConfig):
        return CourseCNN(config)
    raise TypeError(f"expected a ViTConfig, CNNConfig or dict, got {type(config).__name__}")


def config_dict(model: nn.Module | ViTConfig | CNNConfig) -> dict:
    """The config of a course model (or the config itself) as a plain dict (safe for
    ``torch.load(weights_only=True)``): tuples become lists, ``kind`` says which model."""
    cfg = asdict(model.config if isinstance(model, nn.Module) else model)  # type: ignore[arg-type]
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}
