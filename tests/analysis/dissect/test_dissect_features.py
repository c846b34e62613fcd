"""Model inputs from concept images: resizing and luminance."""

import numpy as np
import pytest

from advtf.analysis.dissect import prepare_images, segmentation_masks
from advtf.errors import UserError


def test_prepare_images_resizes_and_takes_luminance():
    images = np.zeros((2, 8, 8, 3), np.float32)
    images[..., 0] = 1.0  # pure red
    grey = prepare_images(images, (4, 4, 1)).numpy()
    assert grey.shape == (2, 4, 4, 1)
    np.testing.assert_allclose(grey, 0.299, atol=1e-3)  # ITU-R 601 luminance of red
    assert prepare_images(images, (8, 8, 3)).numpy().shape == (2, 8, 8, 3)
    with pytest.raises(UserError, match="channel"):
        prepare_images(images, (8, 8, 2))


def test_segmentation_masks_of_chosen_units_at_the_segmentation_size(rng):
    import keras

    inputs = keras.Input((6, 6, 4))
    identity = keras.Model(inputs, {"id": inputs})  # the layer map is the image itself: masks are x > T
    images = rng.random((3, 6, 6, 4)).astype(np.float32)
    thresholds = np.array([0.2, 0.5, 0.7, 0.9], np.float32)
    display, masks = segmentation_masks(identity, "id", thresholds, images, [2, 0], (6, 6))
    np.testing.assert_allclose(display, images, atol=1e-6)
    expected = np.stack([images[..., 2] > 0.7, images[..., 0] > 0.2], -1).astype(np.float32)
    np.testing.assert_array_equal(masks, expected)
