import os

import jax

# The command line's persistent compilation cache (taynode.compile_cache) stays off in tests that call
# taynode.cli.main in-process: no writes to the user's ~/.cache, no test depending on an earlier run.
os.environ.setdefault("TAYNODE_NO_COMPILE_CACHE", "1")

# Accuracy is tested in float64; float32 code paths set their dtype explicitly.
jax.config.update("jax_enable_x64", True)
