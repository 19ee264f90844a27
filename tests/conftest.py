import jax

# Accuracy is tested in float64; float32 code paths set their dtype explicitly.
jax.config.update("jax_enable_x64", True)
