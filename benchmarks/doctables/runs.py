"""Tables of the headline experiments: MNIST, the Latent ODE and FFJORD, from their committed result files."""

from __future__ import annotations

import glob
import os
from collections.abc import Callable

import numpy as np

from .fmt import by_seed, label, load, markdown, paired, percent_change, ratio, reference, seeds_cell, slower

# ---------------------------------------------------------------------------------------------- MNIST


def pal_mnist(ref: dict, reg: str) -> str:
    """Pal et al.'s rerun for a row: by regularizer, whatever its quadrature (R₃ sampled is still R₃)."""
    r = ref["pal2021"]["mnist"].get({"none": "none", "r3": "taynode"}.get(reg, ""))
    return f"{r['nfe']:g} / {r['accuracy']:.2f} % / {r['hours']:g} h" if r else ""


def mnist_table(rows: list[dict], ref: dict | None, seconds: bool = False) -> str:
    """The headline MNIST table from ``full_table.py``'s ``summary.json`` rows (``ref=None``: no Pal et al. column;
    ``seconds``: training time in seconds, for runs of a minute or less)."""
    base = next((r for r in rows if r["reg"] == "none"), None)  # no unregularized run: no paired cells
    head = ["model", "seeds", "test accuracy %", "Δ accuracy, points", "test NFE (dopri5, 1.4e-8, float64)", "NFE saving"]
    head += ["first-epoch → final NFE (1,000 test images)", "training time, " + ("s" if seconds else "min"), "time ratio"]
    head += ["Pal et al. rerun (160 epochs, Tsit5): NFE / acc. / time"] if ref else []
    out = []
    for r in sorted(rows, key=lambda r: (r["reg"] != "none", r["reg"], r["lam"], r["quadrature"])):
        reg = r["reg"] != "none"
        acc, nfe, mins = by_seed(r, "test_acc"), by_seed(r, "test_nfe"), by_seed(r, "train_minutes")
        cells = [
            label(r["reg"], r["lam"], r["quadrature"]),
            ", ".join(map(str, r["seeds"])),
            seeds_cell(list(acc.values()), "{:.2f}"),
        ]
        cells.append(seeds_cell(paired(by_seed(base or {}, "test_acc"), acc, lambda b, x: x - b), "{:+.2f}") if reg else "")
        cells.append(seeds_cell(list(nfe.values()), "{:.1f}"))
        cells.append(seeds_cell(paired(by_seed(base or {}, "test_nfe"), nfe, ratio), "{:.2f}", "×") if reg else "")
        cells.append(f"{seeds_cell(r['first_epoch_nfe'], '{:.0f}')} → {seeds_cell(r['final_epoch_nfe'], '{:.0f}')}")
        cells.append(
            seeds_cell([60 * m for m in mins.values()], "{:.1f}") if seconds else seeds_cell(list(mins.values()), "{:.1f}")
        )
        cells.append(seeds_cell(paired(by_seed(base or {}, "train_minutes"), mins, slower), "{:.2f}", "×") if reg else "")
        cells += [pal_mnist(ref, r["reg"])] if ref else []
        out.append(cells)
    return markdown(head, out)


MNIST_PRESETS = {"full": dict(pal=True), "long": dict(pal=True), "small_cost": dict(pal=False, seconds=True)}


def mnist_file(preset: str) -> Callable[[str], str]:
    """The table of ``benchmarks/mnist/<preset>/summary.json``, as ``full_table.py`` writes it into ``table.md``."""

    def make(root: str) -> str:
        rows = load(root, f"benchmarks/mnist/{preset}/summary.json")["rows"]
        opts = MNIST_PRESETS[preset]
        return mnist_table(rows, reference(root) if opts["pal"] else None, seconds=opts.get("seconds", False))

    return make


# ---------------------------------------------------------------------------------------------- Latent ODE


def latent_table(rows: list[dict], ref: dict) -> str:
    """The Latent ODE table from ``latent_ode/table.py``'s ``summary.json`` rows."""
    base = next((r for r in rows if r["reg"] == "none"), None)  # no unregularized run: no paired cells
    paper, pal = ref["kelly2020"]["fig4_latent"], ref["pal2021"]["latent"]
    head = ["model", "seeds", "test loss", "Δ loss %", "test MSE ×1e-3", "decoder NFE per sample", "NFE saving"]
    head += [
        "epoch-1 → final NFE (100 test records)",
        "training time, min",
        "time ratio",
        "paper: NFE",
        "Pal et al.: NFE / MSE×1e-3 / time",
    ]
    out = []
    for r in sorted(rows, key=lambda r: (r["reg"] != "none", r["reg"], r["lam"], r["quadrature"])):
        reg = r["reg"] != "none"
        loss, nfe, mins = by_seed(r, "loss"), by_seed(r, "nfe"), by_seed(r, "train_minutes")
        p = pal["taynode" if reg else "none"]
        cells = [
            label(r["reg"], r["lam"], r["quadrature"]),
            ", ".join(map(str, r["seeds"])),
            seeds_cell(list(loss.values()), "{:.3f}"),
        ]
        cells.append(seeds_cell(paired(by_seed(base or {}, "loss"), loss, percent_change), "{:+.1f}") if reg else "")
        cells.append(seeds_cell(r["mse_e3"], "{:.3f}"))
        cells.append(seeds_cell(list(nfe.values()), "{:.1f}"))
        cells.append(seeds_cell(paired(by_seed(base or {}, "nfe"), nfe, ratio), "{:.2f}", "×") if reg else "")
        cells.append(f"{seeds_cell(r['first_epoch_nfe'], '{:.0f}')} → {seeds_cell(r['final_epoch_nfe'], '{:.0f}')}")
        cells.append(seeds_cell(list(mins.values()), "{:.1f}"))
        cells.append(seeds_cell(paired(by_seed(base or {}, "train_minutes"), mins, slower), "{:.2f}", "×") if reg else "")
        cells.append(
            f"{paper['nfe_regularized']} (+{paper['loss_change_percent']} % loss)" if reg else f"{paper['nfe_unregularized']}"
        )
        cells.append(f"{p['nfe']:g} / {1e3 * p['mse']:.2f} / {p['hours']:g} h")
        out.append(cells)
    return markdown(head, out)


def latent_file(preset: str) -> Callable[[str], str]:
    return lambda root: latent_table(load(root, f"benchmarks/latent_ode/{preset}/summary.json")["rows"], reference(root))


def latent_single(root: str) -> str:
    """The two one-seed runs of ``taynode study latent-ode`` (R₃ integrated, λ = 1e-2 and 1e-1)."""
    rows, base = [], None
    for path in sorted(glob.glob(os.path.join(root, "benchmarks/latent_ode/results_lam*.json")), reverse=True):
        res = load(root, os.path.relpath(path, root))["results"]
        none = res["unregularized"]
        if base is None:
            base = none
            rows.append(
                [
                    "unregularized",
                    f"{none['loss']:.2f}",
                    "",
                    f"{1e3 * none['mse']:.3f}",
                    f"{none['nfe']:.1f}",
                    "",
                    f"{none['R3']:.1f}",
                ]
            )
        if none != base:
            raise ValueError(f"{path}: its unregularized run differs from the other file's")
        reg = next(v for k, v in res.items() if k != "unregularized")
        rows.append(
            [
                f"R₃, λ = {reg['lam']:g}" + (" (the paper's λ)" if reg["lam"] == 0.01 else ""),
                f"{reg['loss']:.2f}",
                f"{percent_change(none['loss'], reg['loss']):+.1f}",
                f"{1e3 * reg['mse']:.3f}",
                f"{reg['nfe']:.1f}",
                f"{none['nfe'] / reg['nfe']:.2f}×",
                f"{reg['R3']:.3g}",
            ]
        )
    return markdown(
        ["model (seed 0)", "test loss", "Δ loss %", "test MSE ×1e-3", "decoder NFE per sample", "NFE saving", "test R₃"], rows
    )


# ---------------------------------------------------------------------------------------------- FFJORD


FFJORD_NAMES = {"rnode": "RNODE (𝒦+ℬ)", "r2": "TayNODE (R₂)"}


def ffjord_seeds(root: str) -> dict:
    """``seeds.json`` with the unregularized per-seed values put back: the file stores each regularized
    model's values and its paired saving and change, so unregularized = NFE × saving and
    NLL / (1 + change); every regularizer of a dataset must give the same unregularized run."""
    data = load(root, "benchmarks/ffjord/seeds.json")
    for ds, regs in data.items():
        base = None
        for reg, r in regs.items():
            nfe = [n * s for n, s in zip(r["nfe"], r["saving"])]
            nll = [x / (1 + c / 100) for x, c in zip(r["nll"], r["nll_change_percent"])]
            mine = dict(seeds=r["seeds"], nfe=[float(round(n)) for n in nfe], nll=nll)
            if not np.allclose(nfe, mine["nfe"], atol=1e-6) or (
                base and (base["nfe"] != mine["nfe"] or not np.allclose(base["nll"], nll, rtol=1e-9))
            ):
                raise ValueError(f"seeds.json, {ds}/{reg}: the unregularized values it implies are inconsistent")
            base = base or mine
        regs["none"] = base
    return data


def ffjord_seeds_table(root: str) -> str:
    data = ffjord_seeds(root)
    out = []
    for ds in ("8gaussians", "pinwheel", "mnist"):
        base = data[ds]["none"]
        bn, bl = dict(zip(base["seeds"], base["nfe"])), dict(zip(base["seeds"], base["nll"]))
        unit = "bits/dim" if ds == "mnist" else "nats"
        out.append([ds, "unregularized", ", ".join(map(str, base["seeds"])), seeds_cell(base["nll"], "{:.4f}") + f" {unit}"])
        out[-1] += [seeds_cell(base["nfe"], "{:.0f}"), "", "", ""]
        for reg in ("rnode", "r2"):
            if reg not in data[ds]:
                continue
            r = data[ds][reg]
            nfe, nll = dict(zip(r["seeds"], r["nfe"])), dict(zip(r["seeds"], r["nll"]))
            saving = paired(bn, nfe, ratio)
            out.append(
                [
                    ds,
                    FFJORD_NAMES[reg],
                    ", ".join(map(str, r["seeds"])),
                    seeds_cell(list(nll.values()), "{:.4f}") + f" {unit}",
                    seeds_cell(list(nfe.values()), "{:.0f}"),
                    seeds_cell(saving, "{:.2f}", "×"),
                    seeds_cell(paired(bl, nll, percent_change), "{:+.2f}"),
                    "yes" if all(s > 1 for s in saving) else "**no**",
                ]
            )
    head = ["data", "model", "seeds", "test NLL", "eval NFE", "NFE saving", "NLL change %", "saving on every seed"]
    return markdown(head, out)


def ffjord_single(rel: str) -> Callable[[str], str]:
    """One ``taynode study ffjord-table2`` run's ``results.json`` (one seed, every training solver)."""

    def make(root: str) -> str:
        res = load(root, rel)
        unit = res.get("nll_unit", "nats")
        out = []
        for r in res["rows"]:
            ok = r["status"] == "ok"
            name = {"none": "unregularized", **FFJORD_NAMES}[r["regularization"]]
            vals = [f"{r['nll']:.4f}", f"{r['nfe']:.0f}", f"{r['R2']:.3g}", f"{r['jacobian']:.3g}", f"{r['kinetic']:.4g}"]
            out.append(
                [r["training"], name, f"{r['train_seconds']:.0f}", f"{r['step_seconds']:.3f}"]
                + (vals if ok else ["diverged"] * 5)
            )
        head = ["training solver", "model", "training time, s", "s / step", f"test NLL ({unit})", "eval NFE", "R₂", "ℬ", "𝒦"]
        return markdown(head, out)

    return make


def paper_table2(root: str) -> str:
    t2 = reference(root)["kelly2020"]["table2_mnist"]
    out = []
    for model, steps, hours, bpd, nfe, r2, b, k in t2["rows"]:
        cells = [model, "adaptive" if steps is None else f"{steps}", "–" if hours is None else f"{hours:g}"]
        cells += ["NaN (diverged)"] if bpd is None else [f"{bpd:.3f}"]
        cells += ["–" if v is None else f"{v:g}" for v in (nfe, r2, b, k)]
        out.append(cells)
    return markdown(["model", "training steps", "training hours", "bits/dim", "NFE", "R₂", "ℬ", "𝒦"], out)
