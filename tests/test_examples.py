"""The README's API example runs as shipped and prints the closed-form derivatives."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_quickstart_runs():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0] == "[0.25, 0.25, 0.375, 0.75]"  # dz/dt = z² at z = 1/2: K!·z^{K+1}
    assert float(lines[-1]) > 0  # the training step's loss
