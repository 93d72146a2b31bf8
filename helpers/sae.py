"""A TopK sparse autoencoder (SAE) for a model's activations, trained and evaluated the way notebook 10 needs.

The TopK SAE (Makhzani & Frey 2013; Gao et al. 2024, "Scaling and evaluating sparse autoencoders") writes an
activation x (d_model) as a sparse, non-negative combination of ``d_sae`` learned directions:

    pre = W_enc (x - b_pre) + b_enc        (d_sae)
    z   = ReLU(TopK_k(pre))                (d_sae, at most k non-zero)
    x^  = W_dec z + b_pre                  (d_model), the columns of W_dec of unit norm

as in the authors' released code (``openai/sparse_autoencoder``, ``model.py``: ``latents = activation(encoder(x -
pre_bias) + latent_bias)``, ``recons = decoder(latents) + pre_bias``, the TopK activation applying a ReLU to the k
values it keeps). The loss is the squared reconstruction error; sparsity is fixed by k, not by a penalty. Unit-norm
decoder columns remove the scale ambiguity between z and W_dec, so a feature's activation is comparable across
features. Not here: the paper's auxiliary loss for dead latents (AuxK) and its activation normalisation.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

__all__ = ["TopKSAE", "topk_sae_forward", "fvu", "train_sae", "feature_activations", "save_sae", "load_sae"]


def fvu(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Fraction of variance unexplained: ||x - x^||^2 / ||x - mean(x)||^2 over a batch (N, d) -> scalar.
    0 = perfect, 1 = no better than predicting the mean activation."""
    if x.shape != x_hat.shape or x.dim() != 2:
        raise ValueError(f"expected two (N, d) tensors of one shape, got {tuple(x.shape)} and {tuple(x_hat.shape)}")
    return (x - x_hat).pow(2).sum() / (x - x.mean(0, keepdim=True)).pow(2).sum().clamp_min(1e-12)


def topk_sae_forward(x: torch.Tensor, W_enc: torch.Tensor, b_enc: torch.Tensor, W_dec: torch.Tensor,
                     b_pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The TopK SAE as a function: x (N, d_model), W_enc (d_sae, d_model), b_enc (d_sae,), W_dec (d_model, d_sae),
    b_pre (d_model,) -> (x_hat (N, d_model), z (N, d_sae), the mean squared error per element, a scalar)."""
    pre = (x - b_pre) @ W_enc.T + b_enc
    top = pre.topk(k, dim=-1)
    z = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
    x_hat = z @ W_dec.T + b_pre
    return x_hat, z, (x - x_hat).pow(2).mean()


class TopKSAE(nn.Module):
    """TopK sparse autoencoder. ``encode``: (N, d_model) -> codes (N, d_sae) with at most k non-zeros;
    ``decode``: codes -> (N, d_model); ``forward``: x -> (x_hat, codes); ``loss``: the training loss and metrics.

    Args:
        d_model: width of the activations. d_sae: number of features (dictionary size). k: active features per
            input (1 <= k <= d_sae).
    """

    def __init__(self, d_model: int, d_sae: int, k: int, seed: int = 0) -> None:
        super().__init__()
        if d_model < 1 or d_sae < 1:
            raise ValueError(f"d_model and d_sae must be positive, got {d_model} and {d_sae}")
        if not 1 <= k <= d_sae:
            raise ValueError(f"k must lie in 1..d_sae = {d_sae}, got k = {k}")
        self.d_model, self.d_sae, self.k = d_model, d_sae, k
        gen = torch.Generator().manual_seed(seed)
        w_dec = torch.randn(d_model, d_sae, generator=gen)
        w_dec = w_dec / w_dec.norm(dim=0, keepdim=True)
        self.W_dec = nn.Parameter(w_dec)  # (d_model, d_sae), unit-norm columns
        self.W_enc = nn.Parameter(w_dec.T.clone())  # (d_sae, d_model): the decoder's transpose at the start
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_pre = nn.Parameter(torch.zeros(d_model))

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.d_model:
            raise ValueError(f"expected activations (N, {self.d_model}), got shape {tuple(x.shape)}")

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """W_enc (x - b_pre) + b_enc: (N, d_model) -> (N, d_sae)."""
        self._check(x)
        return (x - self.b_pre) @ self.W_enc.T + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Sparse codes (N, d_sae): the k largest pre-activations of each row kept (then ReLU), the rest 0."""
        pre = self.pre_activations(x)
        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """W_dec z + b_pre: (N, d_sae) -> (N, d_model)."""
        if z.dim() != 2 or z.shape[1] != self.d_sae:
            raise ValueError(f"expected codes (N, {self.d_sae}), got shape {tuple(z.shape)}")
        return z @ self.W_dec.T + self.b_pre

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return self.decode(z), z

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``loss`` (the mean squared error per element, what training minimises), ``fvu`` and ``l0`` (mean number
        of active features per row) on a batch (N, d_model)."""
        x_hat, z = self(x)
        return {"loss": (x - x_hat).pow(2).mean(), "fvu": fvu(x, x_hat), "l0": (z > 0).float().sum(-1).mean()}

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Rescale the decoder's columns to unit norm (after each optimiser step)."""
        self.W_dec.div_(self.W_dec.norm(dim=0, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def init_b_pre_(self, x: torch.Tensor) -> None:
        """Start ``b_pre`` at the mean activation of (N, d_model), so the codes describe deviations from it."""
        self._check(x)
        self.b_pre.copy_(x.mean(0))


def train_sae(
    sae: TopKSAE,
    activations: torch.Tensor,
    steps: int = 2000,
    batch_size: int = 1024,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
) -> list[dict[str, float]]:
    """Train ``sae`` with Adam on rows of ``activations`` (N, d_model) drawn with a fixed seed; the decoder is
    renormalised after every step. Returns a history, one ``{"step", "loss", "fvu", "l0"}`` every 1/20 of the
    steps (on the batch of that step)."""
    sae._check(activations)
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps} and {batch_size}")
    device = sae.W_dec.device
    sae.init_b_pre_(activations[: min(len(activations), 20000)].to(device))
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    every = max(1, steps // 20)
    iterator: Iterable[int] = range(steps)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="training the SAE", leave=False)
    for step in iterator:
        idx = torch.randint(0, len(activations), (batch_size,), generator=gen)
        batch = activations[idx].to(device)
        out = sae.loss(batch)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        sae.normalize_decoder_()
        if step % every == 0 or step == steps - 1:
            history.append({"step": step, **{k: float(v.detach()) for k, v in out.items()}})
    return history


@torch.no_grad()
def feature_activations(sae: TopKSAE, activations: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """Codes of every row of ``activations`` (N, d_model) -> (N, d_sae), computed in batches."""
    sae._check(activations)
    device = sae.W_dec.device
    return torch.cat([sae.encode(activations[i : i + batch_size].to(device)) for i in range(0, len(activations),
                                                                                                batch_size)])


def save_sae(sae: TopKSAE, path: str | Path, meta: dict | None = None) -> None:
    """Save ``sae`` as a plain dict (``{"config", "state_dict", "meta"}``, fp16 weights) that
    ``torch.load(weights_only=True)`` reads back."""
    state = {k: v.detach().cpu().half() for k, v in sae.state_dict().items()}
    config = {"kind": "topk_sae", "d_model": sae.d_model, "d_sae": sae.d_sae, "k": sae.k}
    torch.save({"config": config, "state_dict": state, "meta": dict(meta or {})}, path)


def load_sae(name: str, directory: str | Path | None = None) -> TopKSAE:
    """Load a shipped SAE checkpoint by name (``data/checkpoints/manifest.json``, SHA-256 checked), on the CPU.

    Offline (``XAI_OFFLINE=1``) with the file missing: a randomly initialised SAE of the shipped shape, with a
    warning, as :func:`helpers.checkpoints.load_checkpoint` does for the models."""
    from . import checkpoints, env

    directory = Path(directory) if directory is not None else checkpoints.CHECKPOINT_DIR
    manifest = checkpoints.shipped_checkpoints(directory)
    entry = manifest.get(name)
    if entry is None or entry.get("kind") != "topk_sae":
        known = ", ".join(sorted(k for k, v in manifest.items() if v.get("kind") == "topk_sae")) or "none"
        raise checkpoints.CheckpointError(f"unknown SAE checkpoint {name!r}; shipped SAEs: {known}")
    path = directory / entry["file"]
    if not path.exists():
        if env.offline():
            print(f"WARNING (XAI_OFFLINE=1): SAE {name!r} is not available; using a RANDOMLY INITIALISED SAE.")
            return TopKSAE(entry["d_model"], entry["d_sae"], entry["k"])
        raise checkpoints.CheckpointError(
            f"SAE checkpoint {path} is missing; restore it with `git checkout -- {path.name}` or re-create it with "
            f"{entry.get('command', 'tools/train_sae.py')}"
        )
    digest = checkpoints.sha256_file(path)
    if digest != entry["sha256"]:
        raise checkpoints.CheckpointError(f"SAE checkpoint {path} has SHA-256 {digest[:12]}..., expected "
                                          f"{entry['sha256'][:12]}...: the file is corrupt or was replaced")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    cfg = blob["config"]
    sae = TopKSAE(cfg["d_model"], cfg["d_sae"], cfg["k"])
    sae.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()})
    return sae.eval()
