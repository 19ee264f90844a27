r"""Table 2 of Kelly et al. (2020) at CPU scale: FFJORD density estimation, unregularized vs RNODE
(𝒦 + ℬ) vs TayNODE (R₂), each trained with an adaptive solver and with fixed grids.

One run (:func:`train_one`) trains a :class:`~taynode.models.cnf.CNF` with the shared loop
(:func:`taynode.train.train`) on the loss

.. math:: \mathcal L = -\frac1B\sum_b \log p(x_b) + \lambda \sum_{r} \frac1B\sum_b \int_0^1 r\,dt,

(images: the mean bits/dim in place of the mean −log p, as the TayNODE code),
with r ∈ {} (unregularized), {𝒦, ℬ} (RNODE: one λ for both) or {R₂} (TayNODE), all integrated in
the flow's own solve (ℬ reuses the Hutchinson vjp). Training solves are ``dopri5`` (adaptive) or
``rk4`` on a fixed grid of ``steps`` steps (the paper's fixed-grid rows). A run whose loss or
update becomes NaN/inf, or whose solve fails (an adaptive solve past ``max_steps``), is reported
as *diverged*: training stops, the last good checkpoint stays in its folder, and the table shows
NaN, as Table 2's NaN rows.

Evaluation (:func:`evaluate`, every run the same way): the trained weights are cast to float64
and the flow is solved with adaptive ``dopri5`` at rtol = atol = ``eval_tol`` on the held-out
points: NLL (nats, mean of −log p; for images bits/dim, see ``mnist``), NFE (exact count, mean over batches) of the plain flow
(z, Δlogp); R₂, ℬ and 𝒦 (means of the per-example integrals) from a second solve with them in
the state. In 2-D the trace (and so ℬ) is exact in evaluation; Hutchinson's estimator is used in
training, as FFJORD does.

Presets (:data:`PRESETS`):

``cpu``
    2-D ``8gaussians``; a small MLP 2 → 64 → 64 → 2 (tanh, time concatenated); 20,000 training
    and 2,000 test points; batch 256, 1,000 Adam steps at 1e-3; float32 training with dopri5 at
    rtol = atol = 1e-5, or rk4 on 5 and 8 steps; λ = 0.5 for R₂ (the mean over the 2 features)
    and λ = 0.05 for each of 𝒦 and ℬ (sums, as Finlay et al. define them), both chosen so that
    the NLL costs under 1 %; evaluation at 1.4e-8 on the 2,000 test points (R₂, ℬ, 𝒦 on 500).
    6.4 min for the 9 runs on 2 shared CPU cores (12.5 min under heavier load).
``tiny``
    A smoke test of the whole command (seconds of training).
``mnist``
    A reduced MNIST setting: the official images downsampled by 2×2 block means, rounded, to
    14×14 (:func:`mnist_images`; still 256 grey levels, D = 196); uniform dequantization and the
    logit transform (:func:`~taynode.models.cnf.dequantize_logit`) with α = 0.05 (FFJORD used
    1e-6 for MNIST; the milder α keeps the logit-space data within ±3, which a flow trained for
    a few hundred steps can reach), fresh dequantization noise every step; the paper's
    single-scale conv dynamics with fewer channels (:class:`~taynode.models.cnf.ConvDynamics`,
    1 → 8 → 8 → 1, 3×3, softplus, time as an input channel), the last layer initialized to zero
    as in the TayNODE code (training starts from the identity flow); batch 32, 300 Adam steps
    at 1e-3 over the 60,000 training images (0.16 epoch); loss = bits/dim + λ·(regularizers),
    as in the TayNODE code; float32 training with dopri5 at rtol = atol = 1e-5 or rk4 on 5
    steps; λ = 1e-2 for R₂ and 2e-4 for each of 𝒦 and ℬ (both give a penalty of ≈ 0.27 bits/dim
    at a 200-step unregularized model; not tuned). Evaluation on the first 500 test images in
    bits/dim (Hutchinson trace, dequantization noise fixed by the seed), dopri5 at 1e-5 in
    float64; R₂, ℬ, 𝒦 on the first 100. Run time: ``benchmarks/ffjord/README.md``.
``digits``
    The UCI handwritten digits (:mod:`taynode.data.digits`: 8×8, 17 grey levels, a fixed
    1,297 / 250 / 250 split); see that preset's comment and ``benchmarks/ffjord/README.md``.
``mnist-long``
    ``mnist`` trained for many more steps, with the validation NFE curve.
``miniboone``
    The paper's tabular setting (ConcatSquash 43 → 860 → 860 → 43, softplus, batch 1,000,
    rk4 grids of 5, 6, 8 steps); needs MAF's ``data.npy`` (:mod:`taynode.data.miniboone`) and
    a GPU; not run here.

The code: :mod:`.config` (settings, presets), :mod:`.inputs` (data, preprocessing, data loss),
:mod:`.fit` (training one model), :mod:`.evaluation` (metrics, figures), :mod:`.report` (runs and
tables). The names below are the study's public interface.
"""

from __future__ import annotations

from ...models.cnf import ConcatSquashMLP, ConvDynamics
from .config import ARCHS, DATASETS, EVAL_REGS, IMAGES, PRESETS, REGS, FFJORDConfig, preset
from .evaluation import evaluate, evaluate_nfe, plot_densities, replace_trace
from .fit import make_cnf, regularizers, run_config, solver_label, train_one
from .inputs import data_loss, flow_input, is_images, levels, load_curve_data, load_data, mnist_images
from .report import COLUMNS, markdown_table, run_one, run_table

__all__ = [
    "ARCHS",
    "COLUMNS",
    "DATASETS",
    "EVAL_REGS",
    "IMAGES",
    "PRESETS",
    "REGS",
    "ConcatSquashMLP",
    "ConvDynamics",
    "FFJORDConfig",
    "data_loss",
    "evaluate",
    "evaluate_nfe",
    "flow_input",
    "is_images",
    "levels",
    "load_curve_data",
    "load_data",
    "make_cnf",
    "markdown_table",
    "mnist_images",
    "plot_densities",
    "preset",
    "regularizers",
    "replace_trace",
    "run_config",
    "run_one",
    "run_table",
    "solver_label",
    "train_one",
]
