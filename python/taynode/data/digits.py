r"""The UCI handwritten digits (Alpaydin & Kaynak 1998) as shipped by scikit-learn: 1,797 images of
8 × 8 pixels with 17 grey levels (0 … 16), for density estimation.

scikit-learn is an optional dependency (``pip install taynode[digits]``): it ships the data inside
its package (``sklearn.datasets.load_digits``), so nothing is downloaded.

Splits: one fixed permutation (:data:`SPLIT_SEED`, independent of any run's seed) of the 1,797
images into :data:`N_TRAIN` training, :data:`N_VAL` validation and :data:`N_TEST` test images,
disjoint and the same on every machine.

Preprocessing, the same as the MNIST FFJORD path (:func:`taynode.models.cnf.dequantize_logit`)
with the number of levels L = :data:`LEVELS` = 17 in place of 256: uniform dequantization
:math:`v = (x + u)/17`, :math:`u \sim U[0, 1)^D`, so v fills [0, 1) as (x + u)/256 does for MNIST,
then the logit transform of :math:`\alpha + (1 - 2\alpha)v`. Bits/dim as for MNIST
(:func:`taynode.models.cnf.bits_per_dim` with ``levels=17``): the dequantized density on
:math:`[0, 17)^D` is :math:`p_v / 17^D`, so

.. math:: \text{bpd} = -\frac{\log p_y(y) + \text{logdet} - D \log 17}{D \log 2},

a lower bound on the discrete log-likelihood in bits per pixel; the uniform distribution over
the 17 levels is :math:`\log_2 17 \approx 4.087` bits/dim.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import DataError

__all__ = ["LEVELS", "N_TEST", "N_TRAIN", "N_VAL", "SIDE", "SPLIT_SEED", "Digits", "load", "split_indices"]

LEVELS = 17  # grey levels 0..16
SIDE = 8
N_IMAGES = 1797
N_VAL = N_TEST = 250
N_TRAIN = N_IMAGES - N_VAL - N_TEST  # 1,297
SPLIT_SEED = 0


@dataclass(frozen=True)
class Digits:
    """Images uint8 (n, 1, 8, 8) in {0, …, 16} and labels uint8 (n,) for each split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def split(self, name: str):
        """``(images, labels)`` of ``"train"``, ``"val"`` or ``"test"``."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}; valid: 'train', 'val', 'test'")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")


def split_indices(
    n: int = N_IMAGES, n_val: int = N_VAL, n_test: int = N_TEST, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(train, val, test)`` index arrays: one permutation of ``range(n)`` by ``seed``, cut into
    the last ``n_val + n_test`` (validation, then test) and the rest (training), each sorted."""
    if min(n_val, n_test) < 0 or n_val + n_test >= n:
        raise ValueError(f"need 0 <= n_val, n_test and n_val + n_test < n; got n={n}, n_val={n_val}, n_test={n_test}")
    perm = np.random.default_rng(seed).permutation(n)
    cut = n - n_val - n_test
    return np.sort(perm[:cut]), np.sort(perm[cut : cut + n_val]), np.sort(perm[cut + n_val :])


def _as_levels(images) -> np.ndarray:
    """float images → uint8 (n, 1, 8, 8), checking they are the 17 integer levels they claim."""
    x = np.asarray(images)
    if x.ndim != 3 or x.shape[1:] != (SIDE, SIDE):
        raise DataError(f"expected digit images of shape (n, {SIDE}, {SIDE}), got {x.shape}")
    if not np.all(np.isfinite(x)) or np.any(x != np.rint(x)) or x.min() < 0 or x.max() > LEVELS - 1:
        raise DataError(f"digit images must be integers in [0, {LEVELS - 1}]; got values in [{x.min()}, {x.max()}]")
    return x.astype(np.uint8)[:, None]


def load() -> Digits:
    """The digits with the fixed split (module docstring); needs scikit-learn."""
    try:  # optional and slow to import: only when the digits are used
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError(
            "the UCI digits come with scikit-learn, which is not installed: pip install scikit-learn (or taynode[digits])"
        ) from e
    d = load_digits()
    x, y = _as_levels(d.images), np.asarray(d.target, np.uint8)
    if len(x) != N_IMAGES:
        raise DataError(f"scikit-learn's digits have {len(x)} images, expected {N_IMAGES}")
    tr, va, te = split_indices()
    return Digits(x[tr], y[tr], x[va], y[va], x[te], y[te])
