"""Dynamic World building blocks that need no weights: resizes, forms, tiling plans."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dwcube.models import dynamic_world as dw
from dwcube.models.tiling import plan_axis, predict_tiled
from dwcube.testing import randomise_batch_norm


def test_odd_sizes_use_tensorflows_resize_scale() -> None:
    # 101 -> 50: scale 50/101, wider triangle, not the [1,3,3,1]/8 filter
    idx, w = dw._antialias_taps(101, 50)  # noqa: SLF001
    np.testing.assert_allclose(w.sum(1), 1, atol=1e-6)
    assert idx.shape[1] > 4
    idx, w = dw._antialias_taps(8, 4)  # noqa: SLF001
    np.testing.assert_allclose(w[1], np.array([1, 3, 3, 1], np.float32) / 8, rtol=1e-6)
    np.testing.assert_allclose(w[0][:3], np.float32([3, 3, 1]) / 7, rtol=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        dw.build_dynamic_world()(torch.zeros(1, 9, 1, 8))


@pytest.mark.parametrize("shape", [(2, 4), (4, 6), (6, 10), (16, 2)])
def test_even_downsample_as_a_convolution_equals_the_taps(shape: tuple[int, int]) -> None:
    torch.manual_seed(0)
    s = torch.randn(2, 5, *shape)
    fast = dw.DynamicWorldInference(dw.build_dynamic_world())
    np.testing.assert_allclose(fast._downsample_even(s).numpy(), dw.downsample(s).numpy(),  # noqa: SLF001
                               rtol=1e-6, atol=1e-7)


def test_fast_form_equals_the_faithful_network_with_random_weights() -> None:
    torch.manual_seed(1)
    net = randomise_batch_norm(dw.build_dynamic_world(), bias=0.2)  # so that folding is exercised
    fast = dw.DynamicWorldInference(net)
    for h, w in ((32, 32), (33, 30), (7, 9)):
        x = torch.rand(2, 9, h, w)
        with torch.inference_mode():
            np.testing.assert_allclose(fast(x).numpy(), net(x).numpy(), rtol=0, atol=2e-5)


def test_tile_plans_cover_the_image_once() -> None:
    for n, tile, halo, uniform in ((10, 4, 2, False), (101, 32, 24, True), (64, 64, 24, True), (7, 4, 2, True)):
        windows = plan_axis(n, tile=tile, halo=halo, alignment=2, uniform=uniform)
        cores = [i for w in windows for i in range(*w.core)]
        assert cores == list(range(n))
        for w in windows:
            assert w.read[0] % 2 == 0 and w.read[0] <= w.core[0] and w.read[1] >= w.core[1]
            assert w.core[0] - w.read[0] >= min(halo, w.core[0])          # full context inside the image
            assert w.read[1] - w.core[1] >= min(halo, n - w.core[1])
        if uniform:
            assert len({w.read[1] - w.read[0] for w in windows}) == 1
    with pytest.raises(ValueError, match="multiple of the alignment"):
        plan_axis(10, tile=5, halo=2, alignment=2)
    y = predict_tiled(lambda t: t[:, :1] * 3, torch.arange(49.0).reshape(1, 1, 7, 7), tile=4, halo=2, alignment=2)
    assert torch.equal(y, torch.arange(49.0).reshape(1, 1, 7, 7) * 3)  # edge padding never leaks into the output
