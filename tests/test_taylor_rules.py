"""Incremental Taylor mode, rule family by rule family, against nested JVPs and jet (K = 1…8),
gradients included; and its errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from taynode import UnsupportedPrimitiveError, derivatives
from taynode.taylor import coefficients
from taynode.taylor.rules import LINEAR, RULES

K = 8


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


W = jax.random.normal(jax.random.PRNGKey(0), (3, 3)) / 2
Z = jnp.array([[0.3, -0.7, 0.45], [0.8, 0.1, -0.25]])

# One dynamics per rule family; each output has z's shape and depends on t and z.
FAMILIES = {
    "arithmetic": lambda t, z, a: (z * t - z / (1.5 + z**2) + 2.0 * z - (-z)) / (2.0 + t),
    "dot_general": lambda t, z, a: jnp.tanh(z @ W.T + t) @ W + (z[:, :, None] * z[:, None, :]).sum(1),
    "exp_log": lambda t, z, a: jnp.exp(0.5 * z) + jnp.log(2 + z) + jnp.log1p(0.5 * z**2) + jnp.expm1(z * t),
    "powers": lambda t, z, a: (
        jnp.sqrt(1.5 + z)
        + jax.lax.rsqrt(2 + z)
        + (1.2 + z) ** 1.7
        + (2 + z) ** (0.5 + 0.1 * t)
        + z**3
        + z**-2 / 10
        + jnp.square(z - t)
    ),
    "trig": lambda t, z, a: jnp.sin(z + t) * jnp.cos(2 * z) + jnp.tan(0.4 * z) + jnp.arctan(z - t),
    "sigmoids": lambda t, z, a: jnp.tanh(z) + jax.nn.sigmoid(z * t) + jax.scipy.special.erf(z),
    "activations": lambda t, z, a: (
        jax.nn.softplus(z) + jax.nn.relu(z - 0.15) + jax.nn.gelu(z) + jax.nn.gelu(z, approximate=False) + jax.nn.silu(z)
    ),
    "piecewise": lambda t, z, a: (
        jnp.maximum(z, 0.2 * t)
        + jnp.minimum(z**2, 0.3)
        + jnp.abs(z) * z
        + jnp.where(z > 0, z**2, jnp.sin(z))
        + jnp.clip(z, -0.5, 0.5)
        + jnp.sign(z) * z
        + jnp.floor(3 * z) * z
    ),
    "structural": lambda t, z, a: (
        jnp.concatenate([z[:, 1:], z[:, :1] * t], axis=1)
        + jnp.transpose(jnp.reshape(z, (3, 2)))
        + jnp.broadcast_to(jnp.sum(z**2, axis=1, keepdims=True), z.shape)
        + jnp.max(z**3, axis=1, keepdims=True)
        + jnp.min(jnp.sin(z), axis=0)
        + jnp.flip(z, axis=1)
        + jnp.cumsum(z, axis=1)
    ),
    "calls": lambda t, z, a: jax.jit(lambda u: jnp.tanh(u) * t)(z) + jax.checkpoint(jnp.sin)(z),
}


# jet is an independent implementation whose cost grows gently with K, so it is the reference
# at K = 8; nested JVPs (a third, rule-free implementation) are exponential to trace, so they
# check every family at K = 4.
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_rules_match_jet_to_order_8(family):
    f = FAMILIES[family]
    inc = derivatives(f, 0.3, Z, order=K, method="incremental")
    ref = jax.jit(lambda z: derivatives(f, 0.3, z, order=K, method="jet"))(Z)
    for k, (x, y) in enumerate(zip(inc, ref), 1):
        assert rel_err(x, y) <= 1e-10, (family, k, rel_err(x, y))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_rules_match_nested(family):
    f = FAMILIES[family]
    inc = jax.jit(lambda z: derivatives(f, 0.3, z, order=4, method="incremental"))(Z)
    ref = jax.jit(lambda z: derivatives(f, 0.3, z, order=4, method="nested"))(Z)
    for k, (x, y) in enumerate(zip(inc, ref), 1):
        assert rel_err(x, y) <= 1e-10, (family, k)


@pytest.mark.parametrize(
    "power, fn",
    [
        (0.5, jnp.sqrt),
        (-0.5, jax.lax.rsqrt),
        (1 / 3, jnp.cbrt),
        (1.7, lambda x: x**1.7),
        (-3, lambda x: x**-3),
        (4, lambda x: x**4),
        (2, jnp.square),
    ],
)
def test_power_rules_closed_form(power, fn):
    # dz/dt = (c + t)^p  ⇒  dᴷz/dtᴷ = p (p−1) … (p−K+2) (c + t)^(p−K+1)
    c, t = 1.5, 0.25
    z = jnp.zeros((1, 2))
    ds = derivatives(lambda t, z, a: fn(c + t) * jnp.ones_like(z), t, z, order=K, method="incremental")
    for k, d in enumerate(ds, 1):
        exact = np.prod([power - j for j in range(k - 1)]) * (c + t) ** (power - k + 1)
        assert rel_err(d, np.full((1, 2), exact)) <= 1e-12, (power, k)


def test_conv_rule_matches_jet_and_nested():
    kernel = jax.random.normal(jax.random.PRNGKey(1), (2, 2, 3, 3)) / 3  # OIHW

    def f(t, z, a):  # z: (batch, channels, H, W)
        y = jax.lax.conv_general_dilated(z, kernel, (1, 1), "SAME")
        return jax.nn.softplus(y) - t * z

    z = jax.random.normal(jax.random.PRNGKey(2), (2, 2, 5, 5))
    inc = derivatives(f, 0.1, z, order=K, method="incremental")
    ref = jax.jit(lambda z: derivatives(f, 0.1, z, order=K, method="jet"))(z)
    for x, y in zip(inc, ref):
        assert rel_err(x, y) <= 1e-10
    nested = jax.jit(lambda z: derivatives(f, 0.1, z, order=3, method="nested"))(z)
    assert rel_err(inc[2], nested[2]) <= 1e-10


def test_integer_pow_at_zero_is_exact():
    # z' = z²  at z = 0 stays 0; and z' = z³ + 1 at z = 0: power-rule division would give NaN.
    z = jnp.array([[0.0, 0.5]])
    ds = derivatives(lambda t, z, a: z**3 + 1.0, 0.0, z, order=5, method="incremental")
    ref = derivatives(lambda t, z, a: z**3 + 1.0, 0.0, z, order=5, method="nested")
    for x, y in zip(ds, ref):
        assert np.all(np.isfinite(x)) and rel_err(x, y) <= 1e-12


@pytest.mark.parametrize("act", ["softplus", "logaddexp"])
def test_smooth_functions_built_from_max_and_abs_are_exact_at_their_seam(act):
    # jax.nn.softplus(x) = max(x, 0) + log1p(exp(-|x|)): at x = 0 exactly (zero inputs) a branch
    # fixed by the primal alone loses σ(0)·z'' from the second derivative on. nested JVPs use
    # the custom_jvp rule, which is smooth, so they are the reference here.
    f = {
        "softplus": lambda t, z, a: jax.nn.softplus(z),
        "logaddexp": lambda t, z, a: jnp.logaddexp(z, -z) + jnp.logaddexp(0.5 * z * t, 0.0),
    }[act]
    z0 = jnp.zeros((1, 2))
    got = derivatives(f, 0.0, z0, order=6, method="incremental")
    want = derivatives(f, 0.0, z0, order=6, method="nested")
    for k, (g, w) in enumerate(zip(got, want), 1):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12, err_msg=f"order {k}")
    if act == "softplus":  # closed form: z' = ln 2, z'' = σ(0)·z' = ln2/2
        np.testing.assert_allclose(got[1], np.log(2) / 2, rtol=1e-14)


def test_ties_take_the_branch_the_trajectory_takes():
    # dz/dt = g(t - 1/2) at t = 1/2: a tie in the primal, decided by the first coefficient that
    # differs (the right-sided expansion, t > 1/2).
    def check(g, want):
        got = derivatives(lambda t, z, a: g(t - 0.5) + 0 * z, 0.5, jnp.zeros((1, 1)), order=4, method="incremental")
        np.testing.assert_allclose([float(d[0, 0]) for d in got], want, atol=1e-14)

    check(jnp.abs, [0, 1, 0, 0])  # |s| = s for s > 0
    check(lambda s: -jnp.abs(-s), [0, -1, 0, 0])
    check(lambda s: jnp.maximum(s, 0.0), [0, 1, 0, 0])
    check(lambda s: jnp.minimum(s, 0.0), [0, 0, 0, 0])
    # tied at orders 0 and 1, decided at order 2
    check(lambda s: jnp.maximum(s**3, -(s**2)), [0, 0, 0, 6])  # s³ > -s²
    check(lambda s: jnp.maximum(s**3, s**2), [0, 0, 2, 0])  # s² > s³ for small s > 0
    check(lambda s: jnp.minimum(s**3, s**2), [0, 0, 0, 6])


def test_coefficients_are_normalized_and_sum_to_the_solution():
    # dz/dt = z², z(0) = z0: z(h) = z0 / (1 − z0 h) = Σ z0^{k+1} h^k, so z_k = z0^{k+1}.
    z0 = jnp.array([[0.4, -0.3]])
    cs = coefficients(lambda t, z, a: z**2, 0.0, z0, order=K)
    assert len(cs) == K + 1 and rel_err(cs[0], z0) == 0
    for k, c in enumerate(cs):
        assert rel_err(c, z0 ** (k + 1)) <= 1e-13
    for method in ("jet", "nested"):
        other = coefficients(lambda t, z, a: z**2, 0.0, z0, order=4, method=method)
        assert all(rel_err(a, b) <= 1e-13 for a, b in zip(other, cs))


@pytest.mark.parametrize("family", ["dot_general", "sigmoids", "powers", "piecewise"])
def test_parameter_gradient_matches_jet(family):
    f0 = FAMILIES[family]

    def loss(theta, method):
        f = lambda t, z, a: f0(t, z * theta[0] + theta[1], a) * theta[2]  # noqa: E731
        return jnp.sum(derivatives(f, 0.2, Z, order=5, method=method)[-1] ** 2)

    theta = jnp.array([0.9, 0.05, 1.1])
    g_inc = jax.jit(jax.grad(lambda th: loss(th, "incremental")))(theta)
    g_ref = jax.jit(jax.grad(lambda th: loss(th, "jet")))(theta)
    assert rel_err(g_inc, g_ref) <= 1e-9


def test_float32_stays_float32():
    f = FAMILIES["activations"]
    ds = derivatives(f, 0.3, Z.astype(jnp.float32), order=4, method="incremental")
    ref = jax.jit(lambda z: derivatives(f, 0.3, z, order=4, method="jet"))(Z)
    assert all(d.dtype == jnp.float32 for d in ds)
    assert rel_err(ds[-1], ref[-1]) <= 1e-4


def test_unsupported_primitive_is_named():
    # (cond has a rule since issue #29; the incomplete gamma function still has none)
    f = lambda t, z, a: jax.scipy.special.gammainc(2.0, 1.5 + z)  # noqa: E731
    with pytest.raises(UnsupportedPrimitiveError, match=r"'incremental'.*'igamma'.*method='nested'"):
        derivatives(f, 0.5, Z, order=2, method="incremental")


def test_registry_covers_the_issue_list():
    needed = {
        "add",
        "sub",
        "mul",
        "div",
        "neg",
        "dot_general",
        "conv_general_dilated",
        "tanh",
        "logistic",
        "exp",
        "log",
        "log1p",
        "sin",
        "cos",
        "tan",
        "atan",
        "sqrt",
        "rsqrt",
        "integer_pow",
        "pow",
        "erf",
        "max",
        "min",
        "abs",
        "reduce_max",
    }
    structural = {
        "select_n",
        "concatenate",
        "reshape",
        "broadcast_in_dim",
        "transpose",
        "slice",
        "reduce_sum",
        "convert_element_type",
    }
    assert needed <= set(RULES) and structural <= LINEAR


def test_order_8_gradient_matches_finite_differences():
    def loss(theta):
        f = lambda t, z, a: jnp.tanh(z @ (W * theta[0]).T + theta[1] * t) @ W  # noqa: E731
        return jnp.sum(derivatives(f, 0.2, Z, order=K, method="incremental")[-1] ** 2)

    theta = jnp.array([0.9, 0.3])
    g = jax.jit(jax.grad(loss))(theta)
    value = jax.jit(loss)
    eps = 1e-6
    fd = [(value(theta.at[i].add(eps)) - value(theta.at[i].add(-eps))) / (2 * eps) for i in range(2)]
    assert rel_err(g, np.array(fd)) <= 1e-6
