"""The paper's experiments, each a function a command calls."""

from dataclasses import asdict

# Settings added after runs had been stored: at these defaults they are left out of a run's stored
# config, so the checkpoints and cached results written before them still resume and match.
QUADRATURE_DEFAULTS = {"quadrature": "integrated", "samples": 1}
LATER_DEFAULTS = QUADRATURE_DEFAULTS | {"steer": 0.0, "epoch_eval_records": 0}


def check_quadrature(cfg) -> None:
    """A study config's ``quadrature`` and ``samples``, checked before any work."""
    from ..solve import QUADRATURES

    if cfg.quadrature not in QUADRATURES:
        raise ValueError(f"quadrature must be one of {', '.join(QUADRATURES)}, got {cfg.quadrature!r}")
    if isinstance(cfg.samples, bool) or not isinstance(cfg.samples, int) or cfg.samples < 1:
        raise ValueError(f"samples (sample times per solve) must be an integer >= 1, got {cfg.samples!r}")


def stored_config(cfg) -> dict:
    """``asdict(cfg)`` without the later-added settings that are at their defaults."""
    return {k: v for k, v in asdict(cfg).items() if not (k in LATER_DEFAULTS and v == LATER_DEFAULTS[k])}


def save_figure(fig, path: str, dpi: int = 120) -> None:
    """Write a matplotlib figure to ``path`` atomically (a temporary file, then a rename) and close it."""
    import os

    import matplotlib.pyplot as plt

    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    os.replace(tmp, path)
