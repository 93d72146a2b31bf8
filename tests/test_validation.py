"""helpers.validation.check_images: the one image-batch validator (attribution, cam, occlusion, evaluation,
featvis)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import attribution, cam, cifar_models, evaluation, featvis, occlusion
from helpers.validation import check_images


def test_accepts_a_float_batch() -> None:
    check_images(torch.zeros(2, 3, 8, 8))
    check_images(torch.zeros(2, 3, 8, 8), channels=3)
    check_images(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), floating=False)


def test_rejections_say_what_is_wrong_and_how_to_fix_it() -> None:
    with pytest.raises(TypeError, match=r"torch.Tensor of shape \(B, C, H, W\), got ndarray"):
        check_images(np.zeros((1, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"images.unsqueeze\(0\)"):
        check_images(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\).*\(1, 4, 4, 4\)"):
        check_images(torch.zeros(1, 4, 4, 4), channels=3)
    with pytest.raises(TypeError, match=r"floating-point.*uint8.*img.float\(\) / 255"):
        check_images(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), name="img")


def test_the_modules_share_it() -> None:
    """The public functions reject a single image (C, H, W) with the one validator's message."""
    x = torch.zeros(3, 8, 8)
    cnn = cifar_models.CourseCNN(cifar_models.CNNConfig(widths=(4, 4, 4, 4)))
    calls = (lambda: attribution.saliency(cnn, x, 0), lambda: cam.grad_cam(cnn, x, 0, cnn.features[-1]),
             lambda: occlusion.occlusion(cnn, x, 0, 4, 4), lambda: evaluation.sobel_map(x))
    for call in calls:
        with pytest.raises(ValueError, match=r"images must have shape \(B, C, H, W\).*unsqueeze\(0\)"):
            call()
    with pytest.raises(ValueError, match=r"images must have shape \(B, 3, H, W\)"):
        cnn(x)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        featvis._check_images(x)  # featvis keeps its uint8-accepting call of the same validator
