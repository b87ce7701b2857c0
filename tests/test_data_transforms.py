"""kiln.data.transforms: values on hand-made inputs, batch vs sample, seeding."""

import numpy as np
import pytest

from kiln.data import transforms as T


def test_normalize_per_channel():
    x = np.stack([np.full((2, 2), 1.0), np.full((2, 2), 3.0)]).astype(np.float32)
    y = T.Normalize([0.5, 1.0], [0.5, 2.0])(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[0], 1.0)
    np.testing.assert_allclose(y[1], 1.0)
    with pytest.raises(ValueError, match="2 channel statistics for input with 3 channels"):
        T.Normalize([0, 0], [1, 1])(np.zeros((3, 2, 2)))
    with pytest.raises(ValueError, match="division by zero"):
        T.Normalize(0, 0)


def test_random_crop_with_padding_is_a_shifted_window():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4).repeat(50, 0)
    out = T.RandomCrop(4, padding=1).batch(x)
    assert out.shape == (50, 1, 4, 4)
    padded = np.pad(x[0, 0], 1)
    seen = set()
    for o in out[:, 0]:
        hits = [(i, j) for i in range(3) for j in range(3)
                if np.array_equal(padded[i:i + 4, j:j + 4], o)]
        assert hits, o  # every output is one window of the padded image
        seen.add(hits[0])
    assert len(seen) == 9  # independent offsets per sample
    with pytest.raises(ValueError, match="larger than the padded input"):
        T.RandomCrop(7, padding=1)(np.zeros((1, 4, 4)))


def test_flip_and_noise_and_compose():
    from kiln.data.transforms import use_generator

    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3).repeat(40, 0)[:, None]
    with use_generator(np.random.default_rng(0)):
        out = T.RandomHorizontalFlip(0.5).batch(x)
    flipped = [np.array_equal(o[0], x[0, 0][:, ::-1]) for o in out]
    same = [np.array_equal(o[0], x[0, 0]) for o in out]
    assert all(f or s for f, s in zip(flipped, same)) and 5 < sum(flipped) < 35
    assert np.array_equal(T.RandomHorizontalFlip(1.0)(x[0]), x[0][..., ::-1])
    with use_generator(np.random.default_rng(1)):
        n = T.GaussianNoise(std=0.5, clip=(-1, 1)).batch(np.zeros((200, 1, 10), np.float32))
    assert n.min() >= -1 and n.max() <= 1 and 0.4 < n.std() < 0.55
    c = T.Compose([T.RandomHorizontalFlip(1.0), T.Normalize(1.0, 2.0)])
    np.testing.assert_allclose(c(x[0]), (x[0][..., ::-1] - 1) / 2)
    with use_generator(np.random.default_rng(2)):
        a = T.GaussianNoise().batch(np.zeros((3, 2)))
    with use_generator(np.random.default_rng(2)):
        b = T.GaussianNoise().batch(np.zeros((3, 2)))
    np.testing.assert_array_equal(a, b)
