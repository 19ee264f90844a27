"""Print the markdown table of the MNIST runs in a folder (each subfolder's results.json; a run
that diverged, marked by run_table.sh with diverged.json, is a row saying so)."""

import json
import re
import sys
from pathlib import Path


def main(folder):
    rows = []
    for f in sorted(Path(folder).glob("*/results.json")):
        r = json.loads(f.read_text())
        rows.append((r["config"]["reg"], r["config"]["lam"], r))
    for f in sorted(Path(folder).glob("*/diverged.json")):
        r = json.loads(f.read_text())
        rows.append((r["reg"], r["lam"], r | {"diverged": True}))
    rows.sort(key=lambda t: (t[0] != "none", t[0], t[1]))
    base = next((r for reg, _, r in rows if reg == "none" and "test_nfe" in r), None)
    print(
        "| regularizer | λ | test acc. | train acc. | test NFE | NFE ratio (unreg. / this) | test R2 | test R3 | training time |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for reg, lam, r in rows:
        if r.get("diverged"):
            at = re.search(r"at step (\d+)", r["error"])
            print(f"| {reg} | {lam:g} | diverged{f' at step {at.group(1)}' if at else ''} (no model) | – | – | – | – | – | – |")
            continue
        ratio = f"{base['test_nfe'] / r['test_nfe']:.2f}" if base else "–"
        print(
            f"| {reg} | {lam:g} | {100 * r['test_acc']:.2f} % | {100 * r['train_acc']:.2f} % | {r['test_nfe']:.1f} | "
            f"{ratio} | {r['test_R2']:.3g} | {r['test_R3']:.3g} | {r['train_seconds'] / 60:.1f} min |"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/mnist-small")
