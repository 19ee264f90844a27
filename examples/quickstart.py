"""The README's API example: derivatives, a regularized solve, and a training step."""

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

import taynode as tn
from taynode.models import MLPDynamics

jax.config.update("jax_enable_x64", True)

# 1. Total derivatives of the solution through a point: dz/dt = z² gives K!·z^{K+1}.
z = jnp.array([[0.5]])
print([float(d[0, 0]) for d in tn.derivatives(lambda t, z, args: z**2, 0.0, z, order=4)])
# [0.25, 0.25, 0.375, 0.75]

# 2. One solve: the trajectory, R3 and RNODE's two terms per example, and the solver's NFE.
model = MLPDynamics((2, 32, 2), "softplus", key=jax.random.PRNGKey(0), dtype=jnp.float64)
z0 = jax.random.normal(jax.random.PRNGKey(1), (16, 2))
sol = tn.solve(model, z0, (0.0, 1.0), regularizers=["r3", "kinetic", "jacobian"], key=jax.random.PRNGKey(2))
print({k: float(v.mean()) for k, v in sol.integrals.items()}, int(sol.stats["nfe"]))

# 3. A training step with λ·R3 in the loss.
opt = optax.adam(1e-3)
state = opt.init(eqx.filter(model, eqx.is_inexact_array))


@eqx.filter_jit
def step(model, state, z0, target, lam=1e-2):
    def loss(m):
        s = tn.solve(m, z0, (0.0, 1.0), rtol=1e-6, atol=1e-6, regularizers=[tn.RK(3)])
        return jnp.mean((s.z1 - target) ** 2) + lam * jnp.mean(s.integrals["R3"])

    value, grads = eqx.filter_value_and_grad(loss)(model)
    updates, state = opt.update(grads, state, eqx.filter(model, eqx.is_inexact_array))
    return eqx.apply_updates(model, updates), state, value


model, state, value = step(model, state, z0, jnp.tanh(z0))
print(float(value))
