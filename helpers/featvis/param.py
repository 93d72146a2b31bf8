"""Image parameterisations (notebook 06): the image as a function of free parameters, pixels or a scaled spectrum,
optionally in decorrelated colours. ``ImageParam()`` returns (B, 3, H, W) in (0, 1)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["IMAGENET_COLOR_SQRT", "color_sqrt", "ImageParam"]

Tensor = torch.Tensor


#: The square root of ImageNet's colour covariance as Lucid (Olah et al. 2017) publishes it (columns: directions
#: in RGB space scaled by the square root of their variance).
IMAGENET_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])


def color_sqrt(images: Tensor) -> Tensor:
    """A square root ``S`` of the colour covariance of ``images`` (N, 3, H, W) in [0, 1]: ``S @ S.T = cov``, with
    ``S = U diag(sqrt(lambda))`` from the eigendecomposition. Returns (3, 3) float32. Use it as
    ``ImageParam(..., decorrelate=S)`` to decorrelate with a dataset's own colour statistics (e.g. CIFAR-10)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
    px = images.detach().cpu().double().permute(0, 2, 3, 1).reshape(-1, 3)  # float64 on the CPU (none on MPS)
    if px.shape[0] < 4:
        raise ValueError("need at least 4 pixels to estimate a colour covariance")
    cov = torch.cov(px.T)
    evals, evecs = torch.linalg.eigh(cov)
    order = evals.argsort(descending=True)
    return (evecs[:, order] * evals[order].clamp(min=0).sqrt()).float().to(images.device)


class ImageParam(nn.Module):
    """A batch of images as a function of free parameters. ``forward() -> (B, 3, H, W)`` in (0, 1).

    * ``kind="pixel"``: one parameter per pixel and channel, image = sigmoid(colour(params)).
    * ``kind="fourier"``: parameters are the real and imaginary parts of a 2-D real spectrum (B, 3, H, W//2+1, 2),
      multiplied by ``1 / max(f, 1/max(H, W)) ** decay_power`` (f in cycles per pixel) before the inverse FFT
      (orthonormal). Frequencies do NOT move at a similar rate: a unit step of a parameter at frequency f changes
      the image by ``s(f) = 1 / f`` (with ``decay_power=1``), so low frequencies move most. Two effects follow:
      i.i.d. parameters give an image with a natural image's ``1 / f`` amplitude spectrum (the parameters are
      whitened coordinates), and the chain rule scales the image gradient at f by ``s(f)`` -- with plain gradient
      ascent the image moves by ``s(f)**2`` times its gradient, with Adam (per-parameter step ~ lr) by about
      ``lr * s(f)``: a preconditioner that favours low frequencies against the high-frequency gradients a network
      produces. Divided by 4, as Lucid does, to start unsaturated.
    * ``decorrelate``: ``False``; ``True`` (ImageNet's colour square root, :data:`IMAGENET_COLOR_SQRT`); or a (3, 3)
      matrix such as :func:`color_sqrt` of a dataset. The parameters then live in decorrelated colour space and
      are mapped to RGB by the matrix, normalised so that its largest column has norm 1.
    * ``sd``: standard deviation of the random initialisation; ``seed`` makes it reproducible.
    """

    def __init__(self, size: int | tuple[int, int], batch: int = 1, kind: str = "fourier",
                 decorrelate: bool | Tensor = True, sd: float = 0.01, decay_power: float = 1.0, seed: int = 0,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        h, w = (size, size) if isinstance(size, int) else size
        if h < 2 or w < 2 or batch < 1:
            raise ValueError(f"need size >= 2 and batch >= 1, got size={size!r}, batch={batch}")
        if kind not in ("pixel", "fourier"):
            raise ValueError(f"unknown parameterisation {kind!r}; use 'pixel' or 'fourier'")
        self.kind, self.size, self.batch = kind, (h, w), batch
        gen = torch.Generator().manual_seed(seed)
        if kind == "pixel":
            self.raw = nn.Parameter(torch.randn(batch, 3, h, w, generator=gen) * sd)
            self.register_buffer("scale", torch.ones(()))
        else:
            fy = torch.fft.fftfreq(h)[:, None]
            fx = torch.fft.rfftfreq(w)[None, :]
            freqs = torch.sqrt(fx**2 + fy**2)  # (H, W//2+1)
            scale = 1.0 / torch.clamp(freqs, min=1.0 / max(h, w)) ** decay_power
            self.raw = nn.Parameter(torch.randn(batch, 3, h, w // 2 + 1, 2, generator=gen) * sd)
            self.register_buffer("scale", scale[None, None, :, :, None].float())
        if decorrelate is True:
            matrix: Tensor | None = IMAGENET_COLOR_SQRT.clone()
        elif decorrelate is False or decorrelate is None:
            matrix = None
        else:
            matrix = torch.as_tensor(decorrelate, dtype=torch.float32)
            if matrix.shape != (3, 3):
                raise ValueError(f"decorrelate must be a bool or a (3, 3) matrix, got shape {tuple(matrix.shape)}")
        if matrix is not None:
            matrix = matrix / matrix.norm(dim=0).max()
        self.register_buffer("color", matrix)
        if device is not None:
            self.to(device)

    def linear(self) -> Tensor:
        """The image before the sigmoid: (B, 3, H, W), in decorrelated space mapped to RGB."""
        if self.kind == "pixel":
            x = self.raw
        else:
            spec = torch.view_as_complex((self.scale * self.raw).contiguous())
            x = torch.fft.irfft2(spec, s=self.size, norm="ortho") / 4.0
        if self.color is not None:
            x = torch.einsum("dc,bchw->bdhw", self.color, x)
        return x

    def forward(self) -> Tensor:
        return torch.sigmoid(self.linear())
