"""helpers.validation.check_images: the one image-batch validator (attribution, cam, occlusion, evaluation,
featvis)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import attribution, cam, cifar_models, featvis
from helpers.validation import check_images


def test_accepts_a_float_batch() -> None:
    check_images(torch.zeros(2, 3, 8, 8))
    check_images(torch.zeros(2, 3, 8, 8), channels=3)
    check_images(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), floating=False)


def test_rejections_say_what_is_wrong_and_how_to_fix_it() -> None:
    with pytest.raises(TypeError, match=r"torch.Tensor of shape \(B, C, H, W\), got ndarray"):
        check_images(np.zeros((1, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"x.unsqueeze\(0\)"):
        check_images(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\).*\(1, 4, 4, 4\)"):
        check_images(torch.zeros(1, 4, 4, 4), channels=3)
    with pytest.raises(TypeError, match=r"floating-point.*uint8.*img.float\(\) / 255"):
        check_images(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), name="img")


def test_the_modules_share_it() -> None:
    x = torch.zeros(3, 8, 8)
    for fn in (attribution._check_input, cam._check_images, featvis._check_images):
        with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
            fn(x)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        cifar_models._check_images(x, 3)
