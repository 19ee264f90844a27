"""Every rule family of the incremental Taylor method against nested JVPs (a rule-free reference)
for K = 1…6, at random points and at the family's special points (0, ties, domain edges,
negative bases), float64, eagerly and under jit, with parameter gradients; the reproductions of
issue #29 by name; gated cells, pooling, loops and branches as neural-ODE dynamics."""

import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.scipy import special

from taynode import UnsupportedPrimitiveError, derivatives
from taynode.taylor import supported

K = 6
RNG = np.random.default_rng(0)


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


def leaves_err(a, b):
    return max(rel_err(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def point(*values):
    return jnp.array([values], jnp.float64)


RANDOM = point(*RNG.uniform(-0.6, 0.6, 3))

# family: (dynamics f(t, z, theta), special points). theta (a scalar) is differentiated.
FAMILIES = {
    "hyperbolic": (
        lambda t, z, a: jnp.sinh(a * z) + jnp.cosh(z - t) + jnp.asinh(z + t) + jnp.atanh(0.5 * z) + jnp.acosh(2 + a * z**2),
        [point(0.0, 0.0, 0.0)],
    ),
    "inverse": (
        lambda t, z, a: jnp.arcsin(0.5 * a * z) + jnp.arccos(0.3 * z) + jnp.arctan2(z, 1 + t) + jnp.arctan2(1 + z, z - 2),
        [point(0.0, 0.0, 0.0)],
    ),
    "special": (
        lambda t, z, a: (
            lax.erf_inv(0.4 * a * z)
            + special.gammaln(2 + z)
            + special.digamma(2.5 + z)
            + jnp.exp2(a * z)
            + jnp.fmod(3 * z + 2.1, 0.7)
        ),
        [point(0.0, 0.0, 0.0)],
    ),
    "complex": (
        lambda t, z, a: (
            jnp.abs(z * (1 + 2j) + 0.5j * a)
            + jnp.real((1 + 1j) * jnp.exp(1j * z))
            + jnp.imag(jnp.conj(z * (2 - 1j)) ** 2)
            + jnp.abs(lax.complex(z, t * a))
        ),
        [point(0.0, 0.0, 0.0), point(-0.25, 0.0, 0.1)],  # |0.5j a| at a = 1 vanishes at z = -0.25
    ),
    "custom_jvp": (
        lambda t, z, a: jnp.sinc(a * z) + special.xlogy(z, 2 + z) + special.xlog1py(z, a * z) + jax.nn.softplus(z),
        [point(0.0, 0.0, 0.0)],
    ),
    "float_powers": (
        lambda t, z, a: z**3.0 + (a * z) ** 2.0 + z ** jnp.array([1.0, 2.0, 4.0]) + (1.2 + z) ** 1.7 + z**-1.0 / 50,
        [point(1e-3 + 0.0, -0.5, -1.0)],  # negative bases (z**-1 needs z != 0)
    ),
    "products": (
        lambda t, z, a: jnp.cumprod(a * z + 0.5, axis=1) + jnp.prod(z - t, axis=1, keepdims=True) + jnp.cumprod(z, axis=1),
        [point(0.0, 0.0, 0.0), point(0.0, 0.3, -0.5)],
    ),
    "orderings": (
        lambda t, z, a: (
            jnp.sort(z + a * t)
            + lax.top_k(jnp.sin(z), 3)[0]
            + lax.cummax(z, axis=1)
            + lax.cummin(z * a, axis=1, reverse=True)
            + jnp.clip(z, jnp.array([-0.5, 0.0, 0.1]), 0.4)
        ),
        [],
    ),
    "structural": (
        lambda t, z, a: (
            jnp.concatenate(jnp.split(z, 3, axis=1)[::-1], axis=1)
            + sum(jnp.unstack(jnp.tile(z, (3, 1)))) * a
            + z.at[:, 1].set(jnp.sin(z[:, 0]))
            + z.at[:, jnp.array([0, 0, 2])].add(z * t)
            + jnp.linalg.solve(jnp.array([[2.0, 0.3, 0.0], [0.1, 1.5, 0.2], [0.0, 0.4, 3.0]]) * a, z[0])
            + jnp.linalg.solve(jnp.eye(3) * 2 + jnp.outer(z[0], z[0]), z[0])
        ),
        [point(0.0, 0.0, 0.0)],
    ),
    "glu": (lambda t, z, a: jax.nn.glu(jnp.concatenate([z, a * z - t], axis=1))[:, :3] + 0 * z, [point(0.0, 0.0, 0.0)]),
    "jacobian": (
        lambda t, z, a: (jax.jacfwd(lambda u: jnp.tanh(a * u))(z[0]) + jax.jacrev(lambda u: jnp.sin(u) * t)(z[0])) @ z[0] + 0 * z,
        [],
    ),
    "control_flow": (
        lambda t, z, a: (
            lax.fori_loop(0, 3, lambda i, u: jnp.sin(a * u) + t, z)
            + lax.scan(lambda c, x: (c * x + t, c), z, jnp.array([0.5, -1.0]))[0]
            + lax.cond(a > 0, lambda u: jnp.tanh(u), lambda u: -u, z)
            + lax.switch(1, [jnp.sin, jnp.cos, jnp.exp], z * a)
            + lax.map(jnp.cos, z)
        ),
        [point(0.0, 0.0, 0.0)],
    ),
}

CASES = [(name, "random", RANDOM) for name in FAMILIES] + [
    (name, f"special{i}", z) for name, (_, zs) in FAMILIES.items() for i, z in enumerate(zs)
]


def field(name, theta=1.0):
    f = FAMILIES[name][0]
    return lambda t, z, a: f(t, z, theta)


@pytest.mark.parametrize("name,where,z", CASES, ids=[f"{n}-{w}" for n, w, _ in CASES])
def test_family_matches_nested_to_order_6(name, where, z):
    # orders 1…6 at once (order k of a K = 6 run is the order-k run's last); jitted, the eager
    # path is checked against the jitted one below
    inc = jax.jit(lambda u: derivatives(field(name), 0.2, u, order=K, method="incremental"))(z)
    ref = jax.jit(lambda u: derivatives(field(name), 0.2, u, order=K, method="nested"))(z)
    for k, (x, y) in enumerate(zip(inc, ref), 1):
        assert np.all(np.isfinite(x)), (name, k)
        assert rel_err(x, y) <= 1e-10, (name, where, k, rel_err(x, y))


# the gradients of every family, jitted, cost minutes on a busy 2-core machine: two run always
FAST = {"control_flow", "custom_jvp", "gru"}


def fast_or_slow(names):
    return [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in sorted(names)]


@pytest.mark.parametrize("name", fast_or_slow(FAMILIES))
def test_family_under_jit_matches_eager_and_its_gradient_matches_nested(name):
    f = FAMILIES[name][0]
    z = RANDOM

    def r3(theta, method):
        return jnp.sum(derivatives(lambda t, u, a: f(t, u, theta), 0.2, z, order=3, method=method)[-1] ** 2)

    eager = derivatives(field(name), 0.2, z, order=3, method="incremental")
    jitted = jax.jit(lambda u: derivatives(field(name), 0.2, u, order=3, method="incremental"))(z)
    assert leaves_err(jitted, eager) <= 1e-12
    g_inc = jax.jit(jax.grad(lambda a: r3(a, "incremental")))(1.1)
    g_ref = jax.grad(lambda a: r3(a, "nested"))(1.1)
    assert rel_err(g_inc, g_ref) <= 1e-8, name


# -- the reproductions of issue #29 ---------------------------------------------------------


def first(ds):
    return [float(np.asarray(d).ravel()[0]) for d in ds]


@pytest.mark.parametrize("method", ["incremental", "nested"])
def test_issue29_complex_abs(method):
    got = derivatives(lambda t, z, a: jnp.abs(z * (1 + 2j) + 0.5j), 0.0, jnp.array([[0.3]]), order=3, method=method)
    np.testing.assert_allclose(first(got), [1.140175425, 2.5, 5.700877125], rtol=1e-8)


def test_complex_abs_at_zero_is_right_sided():
    # z' = |z (1 + 2j)| + 1 from z = 0: z > 0 for t > 0, so z' = √5 z + 1 (nested JVPs give 0 at
    # the kink for the odd orders)
    got = first(derivatives(lambda t, z, a: jnp.abs(z * (1 + 2j)) + 1, 0.0, jnp.zeros((1, 1)), order=4))
    np.testing.assert_allclose(got, [1.0, 5**0.5, 5.0, 5**1.5], rtol=1e-12)


def test_issue29_stuart_landau_complex_state():
    f = lambda t, z, a: (1 + 1j) * z - jnp.abs(z) ** 2 * z  # noqa: E731
    z = jnp.array([[0.3 + 0.4j, -0.5j]])
    inc = derivatives(f, 0.0, z, order=5, method="incremental")
    ref = derivatives(f, 0.0, z, order=5, method="nested")
    assert leaves_err(inc, ref) <= 1e-12


@pytest.mark.parametrize(
    "f,want",
    [
        # z' = sinc(z): z'' = 0, z''' = sinc''(0) = −π²/3
        (lambda t, z, a: jnp.sinc(z), [1.0, 0.0, -(np.pi**2) / 3]),
        # z' = z log 2 + 1: z^(k) = (log 2)^(k−1)
        (lambda t, z, a: special.xlogy(z, 2.0) + 1, [1.0, np.log(2), np.log(2) ** 2]),
        (lambda t, z, a: special.xlog1py(z, 2.0) + 1, [1.0, np.log(3), np.log(3) ** 2]),
    ],
    ids=["sinc", "xlogy", "xlog1py"],
)
@pytest.mark.parametrize("method", ["incremental", "nested"])
def test_issue29_custom_jvp_functions_at_their_patched_point(f, want, method):
    got = first(derivatives(f, 0.0, jnp.zeros((1, 1)), order=3, method=method))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("method", ["incremental", "jet", "nested"])
def test_issue29_float_exponent_at_zero_and_negative_base(method):
    f = lambda t, z, a: z**3.0 + 1  # noqa: E731
    np.testing.assert_allclose(first(derivatives(f, 0.0, jnp.zeros((1, 1)), order=4, method=method)), [1, 0, 0, 6], atol=1e-14)
    # at z = -0.5: z' = z³ + 1, exact against z ** 3
    g = lambda t, z, a: z**3 + 1  # noqa: E731
    want = first(derivatives(g, 0.0, -0.5 * jnp.ones((1, 1)), order=4, method="nested"))
    np.testing.assert_allclose(first(derivatives(f, 0.0, -0.5 * jnp.ones((1, 1)), order=4, method=method)), want, rtol=1e-12)


def test_issue29_integer_array_exponent_in_jet():
    f = lambda t, z, a: z ** jnp.array([2.0, 3.0]) + 1  # noqa: E731
    z = jnp.array([[0.0, -0.5]])
    ref = derivatives(f, 0.0, z, order=4, method="nested")
    for method in ("incremental", "jet"):
        assert leaves_err(derivatives(f, 0.0, z, order=4, method=method), ref) <= 1e-12, method


@pytest.mark.parametrize("jit", [False, True])
def test_issue29_reduce_max_tie_is_right_sided(jit):
    W = jnp.array([[1.0, 2.0], [0.5, -0.3]])
    c = jnp.array([[1.0, 0.5]])
    f = lambda t, z, a: c + jnp.max(z @ W, axis=1, keepdims=True)  # noqa: E731
    run = lambda z: derivatives(f, 0.0, z, order=3)  # noqa: E731
    got = (jax.jit(run) if jit else run)(jnp.zeros((1, 2)))
    # z(t) moves along c, so z @ W's second entry (0.5 + 2·0.5 > ...) wins for t > 0; the branch
    # g = c + (z @ W)[:, 1] gives the trajectory's derivatives
    branch = derivatives(lambda t, z, a: c + (z @ W)[:, 1:2], 0.0, jnp.zeros((1, 2)), order=3, method="nested")
    np.testing.assert_allclose(first(got), [1.0, 1.85, 3.145], rtol=1e-12)
    np.testing.assert_allclose(first(got), first(branch), rtol=1e-12)


def _jet_refuses_or_matches_nested(f, z, name):
    """jet either refuses ``f`` naming ``name`` or gives nested JVPs' derivatives: never another value.
    (Which one depends on JAX's implementation: jnp.sinc is a custom_jvp with a where-patch on
    jax 0.10, which jet refuses; jax 0.12 writes it without one, and jet is right at 0.)"""
    try:
        got = derivatives(f, 0.0, z, order=3, method="jet")
    except UnsupportedPrimitiveError as e:
        assert name in str(e)
        return
    for g, w in zip(got, derivatives(f, 0.0, z, order=3, method="nested")):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)


def test_issue29_jet_refuses_what_its_rules_get_wrong():
    with pytest.raises(UnsupportedPrimitiveError, match="abs"):
        derivatives(lambda t, z, a: jnp.abs(z * (1 + 2j)), 0.0, jnp.ones((1, 1)), order=2, method="jet")
    for z in (jnp.zeros((1, 1)), jnp.ones((1, 1))):  # 0: the point the implementations patch
        _jet_refuses_or_matches_nested(lambda t, z, a: jnp.sinc(z), z, "sinc")
        _jet_refuses_or_matches_nested(lambda t, z, a: special.xlogy(z, 2.0) + 1.0, z, "xlogy")
        _jet_refuses_or_matches_nested(lambda t, z, a: special.xlog1py(z, 2.0) + 1.0, z, "xlog1py")


# -- one tie rule for every piecewise primitive ----------------------------------------------


@pytest.mark.parametrize(
    "piecewise,branch",
    [
        (lambda s: jnp.max(jnp.stack([s, -s, 2 * s]), axis=0), lambda s: 2 * s),
        (lambda s: jnp.min(jnp.stack([s, s**2]), axis=0), lambda s: s**2),  # s² < s for small s > 0
        (jax.nn.relu, lambda s: s),
        (jax.nn.elu, lambda s: s),
        (lambda s: jnp.where(s > 0, jnp.sin(s), 0.0), jnp.sin),
        (lambda s: jnp.clip(s, 0.0, 1.0), lambda s: s),
        (lambda s: jnp.clip(-s, 0.0, 1.0), lambda s: 0 * s),
        (lambda s: jnp.sort(jnp.stack([s, 2 * s]))[1], lambda s: 2 * s),
        (lambda s: lax.cummax(jnp.stack([s, 2 * s, -s]))[2], lambda s: 2 * s),
        (lambda s: lax.top_k(jnp.stack([-s, s**2 + s]), 1)[0][0], lambda s: s**2 + s),
    ],
)
def test_ties_take_the_branch_the_trajectory_takes(piecewise, branch):
    # dz/dt = g(t): at t = 0 the pieces tie; for t > 0 the branch wins.
    def run(g):
        return first(
            derivatives(lambda t, z, a: g(t + 0 * z[0, 0]) + 0 * z, 0.0, jnp.zeros((1, 1)), order=4, method="incremental")
        )

    np.testing.assert_allclose(
        run(piecewise),
        first(derivatives(lambda t, z, a: branch(t) + 0 * z, 0.0, jnp.zeros((1, 1)), order=4, method="nested")),
        atol=1e-14,
    )


# -- neural-ODE dynamics --------------------------------------------------------------------

KEY = jax.random.PRNGKey(1)


def _gru():
    cell = eqx.nn.GRUCell(3, 3, key=KEY)
    return cell, lambda m, t, z: m(jnp.tanh(z) * t, z) - z, jnp.array(RANDOM[0])


def _lstm():
    cell = eqx.nn.LSTMCell(3, 3, key=KEY)
    z = (jnp.array(RANDOM[0]), jnp.array(RANDOM[0]) * 0.5)
    return cell, lambda m, t, z: jax.tree_util.tree_map(jnp.subtract, m(jnp.sin(z[0]) + t, z), z), z


def _pools():
    conv = eqx.nn.Conv2d(1, 1, 2, padding=((0, 1), (0, 1)), key=KEY)
    avg = eqx.nn.AvgPool2d(2, stride=1, padding=((0, 1), (0, 1)))
    mx = eqx.nn.MaxPool2d(2, stride=1, padding=((0, 1), (0, 1)))
    z = jnp.array(RNG.uniform(-1, 1, (1, 3, 3)))
    return conv, lambda m, t, z: avg(jnp.tanh(m(z))) + mx(jnp.sin(m(z) + t)), z


def _loops():
    lin = eqx.nn.Linear(3, 3, key=KEY)

    def f(m, t, z):
        z = lax.fori_loop(0, 2, lambda i, u: jnp.tanh(m(u)) + t, z)
        z = lax.scan(lambda c, _: (jnp.sin(m(c)), None), z, None, length=2)[0]
        return lax.cond(jnp.sum(z) > 0, lambda u: u * 0.5, lambda u: jnp.tanh(u), z)

    return lin, f, jnp.array(RANDOM[0])


MODELS = {"gru": _gru, "lstm": _lstm, "pooling": _pools, "loops": _loops}


@pytest.mark.parametrize("name", fast_or_slow(MODELS))
def test_neural_ode_layers_match_nested_with_r3_gradients(name):
    model, f, z = MODELS[name]()
    inc = derivatives(lambda t, u, a: f(model, t, u), 0.3, z, order=4, method="incremental")
    ref = derivatives(lambda t, u, a: f(model, t, u), 0.3, z, order=4, method="nested")
    assert leaves_err(inc, ref) <= 1e-10

    def r3(m, method):
        d3 = derivatives(lambda t, u, a: f(m, t, u), 0.3, z, order=3, method=method)[-1]
        return sum(jnp.sum(x**2) for x in jax.tree_util.tree_leaves(d3))

    g_inc = eqx.filter_jit(eqx.filter_grad(lambda m: r3(m, "incremental")))(model)
    g_ref = eqx.filter_grad(lambda m: r3(m, "nested"))(model)
    assert leaves_err(g_inc, g_ref) <= 1e-8


def test_while_loop_follows_the_primal_trip_count():
    def f(t, z, a):
        return lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, jnp.sin(c[1]) + t), (0, z))[1]

    z = RANDOM
    inc = derivatives(f, 0.1, z, order=5, method="incremental")
    ref = derivatives(f, 0.1, z, order=5, method="nested")
    assert leaves_err(inc, ref) <= 1e-10


def test_still_unsupported_primitives_are_named():
    f = lambda t, z, a: special.gammainc(2.0, 1.5 + z)  # noqa: E731
    with pytest.raises(UnsupportedPrimitiveError, match=r"'incremental'.*'igamma'.*method='nested'"):
        derivatives(f, 0.0, RANDOM, order=2)


def test_docs_list_of_supported_primitives_is_generated_and_up_to_date():
    path = os.path.join(os.path.dirname(__file__), "..", "docs", "taylor.md")
    with open(path) as fh:
        page = fh.read()
    assert supported.markdown() in page, "docs/taylor.md is stale: run python -m taynode.taylor.supported --write"
    assert "`scatter-add`" in page and "`custom_jvp_call`" in page
