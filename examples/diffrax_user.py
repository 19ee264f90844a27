"""A diffrax user's own neural ODE, trained unregularized and with TayNODE's R2.

The model, solver call and training loop are plain diffrax / equinox / optax (in the style of
diffrax's neural-ODE example); taynode adds the term (`taynode.RegularizedTerm`) and the exact
NFE (`taynode.count_nfe`). Prints the final loss and the forward NFE of each run.

    python examples/diffrax_user.py            # 300 steps (under 3 minutes on 2 cores)
    python examples/diffrax_user.py --steps 3  # a smoke run
"""

import argparse

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import optax

import taynode

jax.config.update("jax_enable_x64", True)  # an entry point: it may set process-wide flags


class Func(eqx.Module):
    mlp: eqx.nn.MLP

    def __init__(self, key):
        self.mlp = eqx.nn.MLP(2, 2, width_size=32, depth=2, activation=jax.nn.softplus, key=key)

    def __call__(self, t, y, args):
        return self.mlp(y)


def data(key, n=32, length=16):
    """Trajectories of a damped spiral dy/dt = A tanh(y), from random initial states."""
    ts = jnp.linspace(0.0, 2.0, length)
    a = jnp.array([[-0.1, 2.0], [-2.0, -0.1]])
    y0 = jax.random.uniform(key, (n, 2), minval=-1.0, maxval=1.0)
    solve = lambda y: diffrax.diffeqsolve(  # noqa: E731
        diffrax.ODETerm(lambda t, y, args: a @ jnp.tanh(y)), diffrax.Tsit5(), 0.0, 2.0, 0.05, y,
        saveat=diffrax.SaveAt(ts=ts), stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-8),
    )  # fmt: skip
    return ts, y0, jax.vmap(lambda y: solve(y).ys)(y0)


def predict(func, ts, y0, regularizers):
    """One example's trajectory, its integrals and its exact forward NFE."""
    solver = diffrax.Tsit5()
    term = taynode.RegularizedTerm(func, regularizers)  # was: diffrax.ODETerm(func)
    sol = diffrax.diffeqsolve(
        term,
        solver,
        ts[0],
        ts[-1],
        0.05,
        term.initial(y0),  # was: y0
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=1e-4, atol=1e-4),
    )
    ys, integrals = term.split(sol.ys)
    return ys, integrals, taynode.count_nfe(sol, solver, dt0=0.05)


def train(regularizers, lam, steps, key):
    ts, y0, ys = data(jax.random.key(0))
    func = Func(key)
    opt = optax.adam(3e-3)
    state = opt.init(eqx.filter(func, eqx.is_inexact_array))

    def loss_fn(func):
        pred, integrals, nfe = jax.vmap(lambda y: predict(func, ts, y, regularizers))(y0)
        mse = jnp.mean((pred - ys) ** 2)
        return mse + lam * sum(jnp.mean(v) for v in integrals.values()), (mse, integrals, nfe)

    @eqx.filter_jit
    def step(func, state):
        (_, aux), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(func)
        updates, state = opt.update(grads, state)
        return eqx.apply_updates(func, updates), state, aux

    for _ in range(steps):
        func, state, aux = step(func, state)
    # evaluate with R2 measured for both models (the unregularized one's R2 is not trained down)
    pred, integrals, nfe = eqx.filter_jit(lambda f: jax.vmap(lambda y: predict(f, ts, y, "r2"))(y0))(func)
    return jnp.mean((pred - ys) ** 2), jnp.mean(integrals["R2"]), jnp.mean(nfe)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps per run")
    parser.add_argument("--lam", type=float, default=0.1, help="weight λ of R2")
    args = parser.parse_args()
    key = jax.random.key(1)
    for name, regs, lam in (("unregularized", "none", 0.0), ("R2", "r2", args.lam)):
        mse, r2, nfe = train(regs, lam, args.steps, key)
        print(f"{name:>13}: mse {float(mse):.5f}  R2 {float(r2):.4f}  forward NFE per example {float(nfe):.1f}")


if __name__ == "__main__":
    main()
