r"""The paper's Fig. 2: how many steps an adaptive RK solver of order m takes on a trajectory
whose K-th derivative is the last non-zero one.

Each trajectory is a random polynomial :math:`p(t) = \sum_{j \le K} c_j t^j` in d dimensions
(:math:`c_j \sim N(0, I)`), given to the solver as the ODE :math:`\dot z = p'(t)`,
:math:`z(0) = p(0)`, on :math:`t \in [0, 1]`. With f independent of z an explicit RK step is
a quadrature rule :math:`z_1 = z_0 + h \sum_i b_i\, p'(t_0 + c_i h)`: a method of order m is
exact for :math:`\deg p \le m`, and its error estimate (the embedded pair's difference) vanishes
while *both* formulas of the pair are exact. Where the estimate is zero the controller grows the
step at its maximal rate and the solve takes a handful of steps; once K exceeds what the pair
integrates exactly, the steps shrink to what the tolerance demands.

Solvers (order m; embedded order m̂ of the error estimate):

==============  ===  ===  =====================================================================
name            m    m̂    source
==============  ===  ===  =====================================================================
euler_heun      1    2    Euler stepped, Heun as the estimate (:data:`taynode.solvers.STUDY_SOLVERS`;
                          FSAL, 1 f/step)
heun            2    1    :data:`taynode.solvers.SOLVERS` (diffrax.Heun, embedded Euler)
ralston         2    1    diffrax.Ralston (embedded Euler; ``STUDY_SOLVERS``)
bosh3           3    2    registry (diffrax.Bosh3)
fehlberg45      4    5    Fehlberg's RK4(5), the 4th-order solution stepped (``STUDY_SOLVERS``)
dopri5, tsit5   5    4    registry
dopri8          8    7    registry (diffrax.Dopri8)
==============  ===  ===  =====================================================================

Orders 6 and 7 are missing: diffrax has no explicit embedded pair of those orders (its other
solvers are implicit, IMEX or for SDEs), and the classical ones (Verner's 6(5), 7(6)) need
tableaux of 9–10 stages that we have not transcribed and verified.

The heat map shows, per solver, the increase in steps from degree K−1 to K, as log(steps(K) /
steps(K−1)), divided by that solver's largest increase (normalised per solver order, as in the
paper), annotated with the median step count.

What it shows (``taynode study order``, tol 1.4e-8): the steps jump at K = min(m, m̂) + 1, the
first degree at which one formula of the pair stops being exact. For pairs that step with the
lower-order formula (euler_heun, fehlberg45) that is the expected K = m + 1; for pairs that step
with the higher-order one (heun, ralston, bosh3, dopri5, tsit5, dopri8: local extrapolation) the
estimate is the embedded formula's error, so the steps already shrink at K = m̂ + 1 = m, although
the solution is still exact there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .. import solvers as _solvers
from ..solve import solve
from ..solvers import EulerHeun, Fehlberg45  # noqa: F401 (their old home; kept importable here)
from .common import csv_text as _csv_text
from .common import save_figure, setting, with_x64, write_json, write_text

# ---- the solvers: registry entries (the pairs only this study uses: solvers.STUDY_SOLVERS) ----

EXTRA_SOLVERS = _solvers.STUDY_SOLVERS

# Order m̂ of each solver's error estimate (the embedded formula), for the table: the registry's.
EMBEDDED_ORDER = {n: s.error_order for n, s in _solvers.REGISTRY.items() if s.error_order is not None}

DEFAULT_SOLVERS = ("euler_heun", "heun", "ralston", "bosh3", "fehlberg45", "dopri5", "tsit5", "dopri8")
MISSING_ORDERS = {6: "no explicit embedded 6th-order pair in diffrax", 7: "no explicit embedded 7th-order pair in diffrax"}


def get_solver(name: str) -> _solvers.SolverSpec:
    """The registry's solver ``name``, checked to be an explicit RK method with an embedded error estimate."""
    spec = _solvers.get(name)
    if spec.make is None or not spec.embedded:
        raise ValueError(f"solver {name!r} has no error estimate; the order study needs adaptive solvers")
    return spec


# ---- the trajectories ------------------------------------------------------------------------


def polynomial(coeffs: jax.Array, t: jax.Array) -> jax.Array:
    """p(t) = Σ_j coeffs[j] tʲ (Horner), coeffs of shape (degree + 1, d)."""
    out = jnp.zeros_like(coeffs[0])
    for j in range(coeffs.shape[0] - 1, -1, -1):
        out = out * t + coeffs[j]
    return out


def polynomial_field(t: jax.Array, z: jax.Array, coeffs: jax.Array) -> jax.Array:
    """dz/dt = p′(t) for the polynomial with ``coeffs`` (args), broadcast over z's batch."""
    n = coeffs.shape[0]
    out = jnp.zeros_like(coeffs[0])
    for j in range(n - 1, 0, -1):
        out = out * t + j * coeffs[j]
    return jnp.broadcast_to(out, z.shape)


def random_coefficients(rng: np.random.Generator, degree: int, dim: int, max_degree: int) -> np.ndarray:
    """N(0, 1) coefficients up to ``degree``, zero above it (padded to ``max_degree`` + 1 rows)."""
    c = np.zeros((max_degree + 1, dim))
    c[: degree + 1] = rng.standard_normal((degree + 1, dim))
    return c


def make_counter(spec: _solvers.SolverSpec, tol: float, t1: float = 1.0, max_steps: int = 100_000) -> Callable:
    """A jitted ``coeffs -> (steps, nfe, rejected, error at t1)`` for one solver."""

    @jax.jit
    def count(coeffs):
        z0 = coeffs[0][None]
        sol = solve(polynomial_field, z0, (0.0, t1), coeffs, solver=spec, rtol=tol, atol=tol, max_steps=max_steps)
        err = jnp.max(jnp.abs(sol.z1[0] - polynomial(coeffs, t1)))
        s = sol.stats
        return s["steps"], s["nfe"], s["rejected"], err

    return count


# ---- the study -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderConfig:
    """Fig. 2's settings (every field is a flag of ``taynode study order``)."""

    degrees: tuple = setting(tuple(range(9)), "polynomial degrees K")
    solvers: tuple = setting(DEFAULT_SOLVERS, "solver names")
    dim: int = setting(4, "dimension of the trajectories")
    trajectories: int = setting(8, "random trajectories per degree")
    tol: float = setting(1.4e-8, "rtol = atol of every solve")
    t1: float = setting(1.0, "end time of the trajectories")
    seed: int = setting(0, "seed of the random coefficients")

    def __post_init__(self):
        if not self.degrees or min(self.degrees) < 0 or list(self.degrees) != sorted(set(self.degrees)):
            raise ValueError(f"degrees must be distinct non-negative integers in increasing order, got {self.degrees}")
        if self.dim < 1 or self.trajectories < 1:
            raise ValueError(f"dim and trajectories must be >= 1, got {self.dim}, {self.trajectories}")
        if not (0 < self.tol < 1):
            raise ValueError(f"tol must be in (0, 1), got {self.tol}")
        if not self.t1 > 0:
            raise ValueError(f"t1 must be > 0, got {self.t1}")
        for s in self.solvers:
            get_solver(s)


def onset(degrees: Sequence[int], steps: Sequence[float], factor: float = 1.5) -> int | None:
    """The first degree K >= 1 whose median step count exceeds ``factor`` × the fewest steps
    over all degrees (the exact regime, where the estimate is zero); None if none does.

    K = 0 is left out: with f ≡ 0 the initial step rule starts at 1e-6 and the controller needs
    several steps (each ×10) to reach t1, more than for K = 1.
    """
    floor = min(steps)
    for K, s in zip(degrees, steps):
        if K >= 1 and s > factor * floor:
            return K
    return None


@with_x64
def run_study(cfg: OrderConfig = OrderConfig()) -> dict:
    """Count steps for every (solver, degree, trajectory); return the results as plain data."""
    rng = np.random.default_rng(cfg.seed)
    kmax = max(cfg.degrees)
    coeffs = {K: [random_coefficients(rng, K, cfg.dim, kmax) for _ in range(cfg.trajectories)] for K in cfg.degrees}
    rows = []
    for name in cfg.solvers:
        spec = get_solver(name)
        count = make_counter(spec, cfg.tol, cfg.t1)
        for K in cfg.degrees:
            out = np.array([[float(v) for v in count(jnp.asarray(c))] for c in coeffs[K]])
            steps, nfe, rej, err = out.T
            scale = max(1.0, float(np.max(np.abs([np.asarray(polynomial(jnp.asarray(c), cfg.t1)) for c in coeffs[K]]))))
            rows.append(
                dict(
                    solver=name,
                    order=spec.order,
                    embedded_order=EMBEDDED_ORDER.get(name),
                    K=K,
                    steps_median=float(np.median(steps)),
                    steps_min=int(steps.min()),
                    steps_max=int(steps.max()),
                    nfe_median=float(np.median(nfe)),
                    rejected_median=float(np.median(rej)),
                    max_error=float(err.max()),
                    max_rel_error=float(err.max() / scale),
                )
            )
    summary = {"config": asdict(cfg), "rows": rows, "solvers": {}}
    for name in cfg.solvers:
        r = [x for x in rows if x["solver"] == name]
        med = [x["steps_median"] for x in r]
        K_on = onset(cfg.degrees, med)
        m = r[0]["order"]
        summary["solvers"][name] = dict(
            order=m,
            embedded_order=EMBEDDED_ORDER.get(name),
            onset_K=K_on,
            expected_onset_K=m + 1,
            exact_pair_onset_K=exact_pair_onset(name, m),
            increase=increase(med),
        )
    return summary


def exact_pair_onset(name: str, order: int) -> int | None:
    """min(m, m̂) + 1: the first degree at which one formula of the pair is no longer exact, so
    the error estimate stops vanishing."""
    mhat = EMBEDDED_ORDER.get(name)
    return None if mhat is None else min(order, mhat) + 1


def increase(steps: Sequence[float]) -> list:
    """Per-solver normalised increase in steps from K−1 to K, measured as log(steps(K) /
    steps(K−1)) (step counts span 3 to 10⁴, and above the onset they keep growing with the size
    of the K-th derivative) and divided by the solver's largest increase. The first degree has no
    predecessor: NaN."""
    d = np.diff(np.log(np.asarray(steps, float)))
    top = np.max(d) if d.size and np.max(d) > 0 else 1.0
    return [float("nan")] + [float(x / top) for x in d]


# ---- output ----------------------------------------------------------------------------------


def markdown_table(summary: dict) -> str:
    """The study's table: steps per solver and degree K, the onset K and the orders it is compared with."""
    degrees = summary["config"]["degrees"]
    head = "| solver | m | m̂ | " + " | ".join(f"K={K}" for K in degrees) + " | onset K | m+1 | min(m,m̂)+1 |"
    sep = "|" + "---|" * (len(degrees) + 6)
    lines = [head, sep]
    for name, info in summary["solvers"].items():
        med = [x["steps_median"] for x in summary["rows"] if x["solver"] == name]
        cells = " | ".join(f"{s:g}" for s in med)
        on = "—" if info["onset_K"] is None else str(info["onset_K"])
        lines.append(
            f"| {name} | {info['order']} | {info['embedded_order']} | {cells} | {on} | {info['expected_onset_K']} | {info['exact_pair_onset_K']} |"
        )
    cfg = summary["config"]
    lines.append("")
    lines.append(
        f"Median accepted steps over {cfg['trajectories']} random degree-K polynomial trajectories in "
        f"{cfg['dim']} dimensions on [0, {cfg['t1']:g}], rtol = atol = {cfg['tol']:g}; m = solver order, "
        f"m̂ = order of its error estimate; onset K = first K >= 1 with more than 1.5× the fewest steps "
        f"(K = 0 excluded: f ≡ 0 starts at the initial-step rule's 1e-6). Missing orders: "
        + "; ".join(f"{k}: {v}" for k, v in MISSING_ORDERS.items())
        + "."
    )
    return "\n".join(lines) + "\n"


def csv_text(summary: dict) -> str:
    """The study's rows as CSV (one row per solver, degree and trajectory)."""
    return _csv_text(summary["rows"], list(summary["rows"][0]), lineterminator="\n")


def plot(summary: dict, path: str) -> None:
    """Fig. 2: steps against degree K per solver, to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    degrees = summary["config"]["degrees"]
    names = list(summary["solvers"])
    inc = np.array([summary["solvers"][n]["increase"] for n in names])
    med = np.array([[x["steps_median"] for x in summary["rows"] if x["solver"] == n] for n in names])
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(degrees), 0.9 + 0.5 * len(names)), layout="constrained")
    im = ax.imshow(np.nan_to_num(inc, nan=0.0), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    for i in range(len(names)):
        for j in range(len(degrees)):
            ax.text(
                j,
                i,
                f"{med[i, j]:.0f}",
                ha="center",
                va="center",
                fontsize=8,
                color="black" if np.nan_to_num(inc[i, j]) > 0.6 else "white",
            )
        m = summary["solvers"][names[i]]["order"]
        if m + 1 in degrees:  # the paper's expectation: small steps from K = m + 1
            j = degrees.index(m + 1)
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="crimson", lw=1.5))
    ax.set_xticks(range(len(degrees)), [str(K) for K in degrees])
    ax.set_yticks(range(len(names)), [f"{n} (m={summary['solvers'][n]['order']})" for n in names])
    ax.set_xlabel("polynomial degree K (last non-zero derivative)")
    ax.set_title(
        f"Increase in log(steps) from K−1 to K, normalised per solver (tol {summary['config']['tol']:g});\n"
        "numbers: median steps; red box: K = m + 1",
        fontsize=9,
    )
    fig.colorbar(im, ax=ax, label="normalised increase in log(steps)")
    save_figure(fig, path)


def run(cfg: OrderConfig = OrderConfig(), out_dir: str = "runs/order") -> dict:
    """Run the study and write fig2.png, order.md, order.csv and results.json into ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    summary = run_study(cfg)
    png = os.path.join(out_dir, "fig2.png")
    plot(summary, png)
    write_text(os.path.join(out_dir, "order.md"), markdown_table(summary))
    write_text(os.path.join(out_dir, "order.csv"), csv_text(summary))
    summary["figure"] = png
    write_json(os.path.join(out_dir, "results.json"), summary, default=str)
    return summary
