"""The FFJORD study's data: loading each dataset's splits, and the flow's input (images
dequantized and logit-transformed) and data loss (bits/dim for images, nats otherwise)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ...data import digits, miniboone, mnist, toy2d
from ...models.cnf import bits_per_dim, dequantize_logit
from .config import IMAGES, FFJORDConfig

__all__ = ["data_loss", "flow_input", "is_images", "levels", "load_curve_data", "load_data", "mnist_images"]


def np_dtype(cfg: FFJORDConfig):
    return np.float64 if cfg.dtype == "float64" else np.float32


def is_images(cfg: FFJORDConfig) -> bool:
    """Whether the config's dataset is an image dataset (dequantized, scored in bits/dim)."""
    return cfg.dataset in IMAGES


def levels(cfg: FFJORDConfig) -> int:
    """Grey levels of the image dataset (256 for MNIST, 17 for the UCI digits)."""
    if not is_images(cfg):
        raise ValueError(f"dataset {cfg.dataset!r} is not an image dataset ({list(IMAGES)})")
    return IMAGES[cfg.dataset]


def mnist_images(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 images (n, 28, 28) → uint8 (n, 1, size, size): means over (28/size)² blocks,
    rounded to the nearest integer, so they stay in {0, …, 255} for the dequantization."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"expected MNIST images of shape (n, 28, 28), got {images.shape}")
    if 28 % size:
        raise ValueError(f"size must divide 28, got {size}")
    k = 28 // size
    blocks = images.reshape(images.shape[0], size, k, size, k).astype(np.float64).mean(axis=(2, 4))
    return np.rint(blocks).astype(np.uint8)[:, None]


def _check_mnist_curve(cfg: FFJORDConfig, n: int):
    if cfg.curve_examples and cfg.train_examples + cfg.curve_examples > n:
        raise ValueError(
            f"MNIST's curve images are the last {cfg.curve_examples} training images and must not overlap the first "
            f"train_examples={cfg.train_examples} (of {n}): lower one of them"
        )


def load_data(cfg: FFJORDConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` arrays: toys drawn with seeds ``seed`` and ``seed + 1``; MINIBOONE's
    MAF train and test splits (the first ``eval_examples`` test rows); MNIST's first
    ``train_examples`` training and first ``eval_examples`` test images, downsampled
    (:func:`mnist_images`), uint8 (n, 1, s, s); the digits' fixed training split (its first
    ``train_examples``) and the first ``eval_examples`` of its test split, uint8 (n, 1, 8, 8)."""
    if cfg.dataset == "mnist":
        d = mnist.load(cfg.data)
        _check_mnist_curve(cfg, len(d.x_train))
        return mnist_images(d.x_train[: cfg.train_examples], cfg.image_size), mnist_images(
            d.x_test[: cfg.eval_examples], cfg.image_size
        )
    if cfg.dataset == "digits":
        d = digits.load()
        return d.x_train[: cfg.train_examples], d.x_test[: cfg.eval_examples]
    if cfg.dataset == "miniboone":
        d = miniboone.load(cfg.data)
        return d.train.astype(np_dtype(cfg)), d.test[: cfg.eval_examples]
    train_x = toy2d.sample(cfg.dataset, cfg.train_examples, seed=cfg.seed).astype(np_dtype(cfg))
    test_x = toy2d.sample(cfg.dataset, cfg.eval_examples, seed=cfg.seed + 1)
    return train_x, test_x


def load_curve_data(cfg: FFJORDConfig) -> np.ndarray:
    """The ``curve_examples`` held-out examples evaluated during training (never the test set):
    the digits' validation split, MNIST's last training images (disjoint from the first
    ``train_examples``), the toys' points drawn with seed ``seed + 2``."""
    n = cfg.curve_examples
    if n == 0:
        raise ValueError("curve_examples is 0: this config evaluates no curve")
    if cfg.dataset == "digits":
        x = digits.load().x_val
        if n > len(x):
            raise ValueError(f"curve_examples={n} is more than the digits' {len(x)} validation images")
        return x[:n]
    if cfg.dataset == "mnist":
        d = mnist.load(cfg.data)
        _check_mnist_curve(cfg, len(d.x_train))
        return mnist_images(d.x_train[-n:], cfg.image_size)
    if cfg.dataset == "miniboone":
        raise ValueError("miniboone has no curve split here: set curve_every=curve_examples=0")
    return toy2d.sample(cfg.dataset, n, seed=cfg.seed + 2)


def flow_input(cfg: FFJORDConfig, x: jax.Array, key: jax.Array, dtype: jnp.dtype | type) -> tuple[jax.Array, jax.Array]:
    """``(y, logdet)``: images dequantized with their number of levels and logit-transformed
    (with the log-determinant); other data as they are (logdet 0)."""
    if is_images(cfg):
        return dequantize_logit(key, x, cfg.alpha, levels=levels(cfg), dtype=dtype)
    x = jnp.asarray(x, dtype)
    return x, jnp.zeros(x.shape[:1], dtype)


def data_loss(cfg: FFJORDConfig, log_prob: jax.Array, logdet: jax.Array, dims: int) -> jax.Array:
    """Per-example loss of the data term: bits/dim for images, −log p (nats) otherwise."""
    return bits_per_dim(log_prob, logdet, dims, levels=levels(cfg)) if is_images(cfg) else -log_prob
