"""JAX's persistent compilation cache for taynode's command line.

Most of a first ``taynode demo`` is XLA compiling the solver loops; the programs are the same from
run to run, so the command line (never the library: this is a process-wide setting) keeps JAX's
compiled programs on disk and a second run loads them instead of compiling again.

Where: ``$XDG_CACHE_HOME/taynode/jax``, i.e. ``~/.cache/taynode/jax`` when XDG_CACHE_HOME is
unset. A cache directory the user gave JAX (``JAX_COMPILATION_CACHE_DIR``) is used as it is.
Off: ``TAYNODE_NO_COMPILE_CACHE=1``. The folder may be deleted at any time; JAX's cache key
covers the jax/jaxlib versions, the XLA flags and the configuration (e.g. 64-bit types), so a
program compiled under other settings is never loaded.

JAX does not store programs with host callbacks, and equinox's run-time error checks
(``eqx.error_if``) are host callbacks: so the solves' failures are returned by the compiled programs
and raised after them (:mod:`taynode.ode.failures`), which keeps the training step and the
evaluation solves cacheable. Tracing (Python) is never cached: it bounds what a warm run saves.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import jax

OFF = "TAYNODE_NO_COMPILE_CACHE"

# JAX caches only programs that took at least this long to compile (its default: 1 s); none, so the
# demo's many small programs (eager operations take 0.02-0.2 s each) are kept too.
MIN_COMPILE_SECS = 0.0


def default_dir() -> Path:
    """``$XDG_CACHE_HOME/taynode/jax``, or ``~/.cache/taynode/jax`` when XDG_CACHE_HOME is unset or empty."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "taynode" / "jax"


def enable_compile_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache for this process; the folder used, or None if off.

    For entry points only, before anything is compiled. Off when ``TAYNODE_NO_COMPILE_CACHE`` is set
    (to anything but ``""`` or ``"0"``) or the folder cannot be created (a warning says why).
    """
    if os.environ.get(OFF, "") not in ("", "0"):
        return None
    own = jax.config.jax_compilation_cache_dir
    folder = Path(own) if own else default_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        warnings.warn(f"taynode: no compilation cache ({e}); set {OFF}=1 to silence this", RuntimeWarning, stacklevel=2)
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECS)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # no size floor (one is meant for remote stores)
    return folder
