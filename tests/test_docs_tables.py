"""Every results table in the README and the docs is what its committed result files give.

``benchmarks/tables.py --check`` regenerates each ``<!-- table:NAME -->`` block from its files and
lists any difference; these tests run it on the repository, and on a copy whose result files or
tables were edited by hand (the test of the test: an edit must make the check fail).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import tables  # noqa: E402
from doctables.fmt import paired, ratio, reference, seeds_cell  # noqa: E402
from doctables.runs import latent_table, mnist_file, mnist_table  # noqa: E402
from taynode.studies.batch import unfinished_note  # noqa: E402


@pytest.fixture
def repo_copy(tmp_path):
    """The README, the docs pages and the benchmarks' result files (no figures), in a scratch folder."""
    root = tmp_path / "repo"
    shutil.copytree(os.path.join(ROOT, "docs"), root / "docs", ignore=shutil.ignore_patterns("*.png", "*.py"))
    shutil.copytree(
        os.path.join(ROOT, "benchmarks"), root / "benchmarks", ignore=shutil.ignore_patterns("*.png", "*.npz", "*.py")
    )
    shutil.copy(os.path.join(ROOT, "README.md"), root / "README.md")
    return str(root)


def edit_json(path: str, change) -> None:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    change(data)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh)


def test_every_table_matches_its_files():
    assert tables.update(ROOT, check=True) == []


def test_every_generator_has_a_table_and_the_readme_has_the_headline():
    used = set()
    for path in tables.documents(ROOT):
        with open(path, encoding="utf-8") as fh:
            used |= {m.group(2) for m in tables.BLOCK.finditer(fh.read())}
    assert used == set(tables.TABLES)
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    assert "<!-- table:headline -->" in readme and len(readme.splitlines()) <= 200


@pytest.mark.parametrize("preset", ["full", "long", "small_cost"])
def test_mnist_table_files_are_their_summaries(preset):
    """``full_table.py --from-summary`` output: what the committed ``table.md`` must hold."""
    folder = os.path.join(ROOT, "benchmarks", "mnist", preset)
    with open(os.path.join(folder, "summary.json"), encoding="utf-8") as fh:
        unfinished = json.load(fh)["unfinished"]
    with open(os.path.join(folder, "table.md"), encoding="utf-8") as fh:
        assert fh.read() == mnist_file(preset)(ROOT) + unfinished_note(unfinished)


@pytest.mark.parametrize("preset", ["cpu", "long"])
def test_latent_table_files_are_their_summaries(preset):
    folder = os.path.join(ROOT, "benchmarks", "latent_ode", preset)
    with open(os.path.join(folder, "summary.json"), encoding="utf-8") as fh:
        saved = json.load(fh)
    with open(os.path.join(folder, "table.md"), encoding="utf-8") as fh:
        assert fh.read() == latent_table(saved["rows"], reference(ROOT)) + unfinished_note(saved["unfinished"])


def _nfe_up(rows):
    rows["rows"][0]["test_nfe"][0] += 6.0


def _latent_loss(rows):
    next(r for r in rows["rows"] if r["lam"] == 2.0)["loss"][1] *= 1.01  # the headline row


def _regularizer_seconds(rows):
    rows["rows"][0]["runs"][0]["seconds"] *= 2


def _pal(ref):
    ref["pal2021"]["mnist"]["taynode"]["nfe"] = 81.3


def _table2(ref):
    ref["kelly2020"]["table2_mnist"]["rows"][-1][4] = 93


def _parallel(rows):
    rows[1]["rows"][0]["step_ms"] += 10


def _target(res):
    res["runs"][0]["heldout"] *= 1.5


@pytest.mark.parametrize(
    "rel, change, expect",
    [
        ("benchmarks/mnist/full/summary.json", _nfe_up, {"README.md: headline", "docs/results/mnist.md: mnist-full"}),
        (
            "benchmarks/latent_ode/cpu/summary.json",
            _latent_loss,
            {"README.md: headline", "docs/results/latent-ode.md: latent-cpu"},
        ),
        (
            "benchmarks/regularizers/ffjord/summary.json",
            _regularizer_seconds,
            {"docs/results/regularizers.md: regularizers-ffjord"},
        ),
        ("benchmarks/reference.json", _pal, {"README.md: headline", "docs/results/mnist.md: mnist-long"}),
        ("benchmarks/reference.json", _table2, {"README.md: headline", "docs/results/ffjord-cpu.md: paper-table2"}),
        ("benchmarks/results/data_parallel.json", _parallel, {"docs/data-parallel.md: data-parallel-f32"}),
        ("benchmarks/results/lambda_target.json", _target, {"docs/lambda-target.md: lambda-target"}),
    ],
)
def test_a_hand_edited_result_file_fails_the_check(repo_copy, rel, change, expect):
    assert tables.update(repo_copy, check=True) == []
    edit_json(os.path.join(repo_copy, rel), change)
    stale = set(tables.update(repo_copy, check=True))
    assert expect <= stale
    tables.update(repo_copy)  # regenerating makes the tables agree with the edited file again
    assert tables.update(repo_copy, check=True) == []


def test_a_seeds_file_that_contradicts_itself_is_an_error(repo_copy):
    """seeds.json stores savings, not the unregularized runs: an NFE edited alone implies two different ones."""
    edit_json(os.path.join(repo_copy, "benchmarks/ffjord/seeds.json"), lambda d: d["pinwheel"]["r2"]["nfe"].__setitem__(0, 90.0))
    with pytest.raises(ValueError, match="pinwheel/r2"):
        tables.update(repo_copy, check=True)


def test_a_hand_edited_table_fails_the_check_and_check_writes_nothing(repo_copy):
    path = os.path.join(repo_copy, "README.md")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    edited = text.replace("2.41×", "2.51×", 1)
    assert edited != text
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(edited)
    assert tables.update(repo_copy, check=True) == ["README.md: headline"]
    with open(path, encoding="utf-8") as fh:
        assert fh.read() == edited
    assert tables.main(["--check", "--root", repo_copy]) == 1


def test_an_unknown_table_name_is_an_error(repo_copy):
    with open(os.path.join(repo_copy, "docs", "index.md"), "a", encoding="utf-8") as fh:
        fh.write("\n<!-- table:typed-by-hand -->\n| a |\n<!-- /table:typed-by-hand -->\n")
    with pytest.raises(KeyError, match="typed-by-hand"):
        tables.update(repo_copy, check=True)


def test_cells_show_the_mean_then_each_seed():
    assert seeds_cell([], "{:.2f}") == ""
    assert seeds_cell([2.0], "{:.2f}", "×") == "2.00×"
    assert seeds_cell([3.0, 1.0], "{:.1f}", "×") == "2.0× (3.0, 1.0)"
    # paired by seed: a seed without an unregularized run is left out, not paired with another seed's
    assert paired({0: 10.0, 1: 30.0}, {1: 10.0, 2: 5.0}, ratio) == [3.0]
    # a mean of paired ratios, not a ratio of means (which would be 20/7.5 = 2.67)
    assert seeds_cell(paired({0: 10.0, 1: 30.0}, {0: 5.0, 1: 10.0}, ratio), "{:.2f}") == "2.50 (2.00, 3.00)"


def test_tables_without_an_unregularized_run_have_no_paired_cells():
    """A run folder of regularized runs only (e.g. a study resumed elsewhere) still gives a table."""
    row = dict(reg="r3", lam=2.0, quadrature="sampled4", seeds=[0], loss=[12.9], mse_e3=[3.57], nfe=[60.9])
    row |= dict(train_minutes=[54.5], first_epoch_nfe=[46.0], final_epoch_nfe=[60.0])
    text = latent_table([row], reference(ROOT))
    assert "60.9" in text and "×" not in text.split("\n")[2].split("|")[7]
    mnist = dict(reg="r3", lam=1e4, quadrature="integrated", seeds=[0, 1], test_acc=[97.6, 97.5], test_nfe=[21.0, 21.0])
    mnist |= dict(train_minutes=[44.0, 45.0], first_epoch_nfe=[21.0, 21.0], final_epoch_nfe=[21.0, 21.0])
    assert "21.0 (21.0, 21.0)" in mnist_table([mnist], None)


@pytest.mark.slow  # compiles an R3 solve in float64: about 15 s on 2 quiet cores, a minute under load
def test_the_readme_quickstart_is_ten_lines_that_run():
    """The README's quickstart, executed as shipped (float64, a 16-point batch: a few seconds)."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        code = re.search(r"## Quickstart\n\n```python\n(.*?)```", fh.read(), re.S).group(1)
    assert len(code.strip().splitlines()) <= 10
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102
    assert scope["sol"].stats["nfe"] > 0 and float(scope["loss"]) > 0


@pytest.mark.parametrize(
    "script, folder, flags",
    [
        ("benchmarks/mnist/full_table.py", "benchmarks/mnist/long", []),
        ("benchmarks/mnist/full_table.py", "benchmarks/mnist/small_cost", ["--no-reference", "--seconds"]),
        ("benchmarks/latent_ode/table.py", "benchmarks/latent_ode/cpu", []),
    ],
)
def test_from_summary_rewrites_the_committed_table(tmp_path, script, folder, flags, capsys):
    """The table scripts' ``--from-summary`` (how the committed ``table.md`` files were regenerated)."""
    dest = tmp_path / "dest"
    shutil.copytree(os.path.join(ROOT, folder), dest, ignore=shutil.ignore_patterns("*.png"))
    (dest / "table.md").write_text("stale\n")
    spec = importlib.util.spec_from_file_location("table_script", os.path.join(ROOT, script))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--from-summary", "--dest", str(dest), *flags])
    with open(os.path.join(ROOT, folder, "table.md"), encoding="utf-8") as fh:
        assert (dest / "table.md").read_text() == fh.read()


@pytest.mark.parametrize("task", ["digits", "mnist-long"])
def test_ffjord_scale_tables_are_their_result_files_and_the_page_holds_them(tmp_path, task):
    """``docs/results/ffjord.md`` is written whole by ``benchmarks/ffjord/scale_table.py`` (issue #27), not
    by ``tables.py``: rebuilt from the committed per-run copies alone, each task's ``table.md`` is what is
    committed, and the page holds it unedited."""
    folder = os.path.join(ROOT, "benchmarks", "ffjord", task)
    shutil.copytree(os.path.join(folder, "results"), tmp_path / task / "results")
    spec = importlib.util.spec_from_file_location("scale_table", os.path.join(ROOT, "benchmarks", "ffjord", "scale_table.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--dest", str(tmp_path), "--tasks", task])
    with open(os.path.join(folder, "table.md"), encoding="utf-8") as fh:
        committed = fh.read()
    assert (tmp_path / task / "table.md").read_text() == committed
    with open(os.path.join(ROOT, "docs", "results", "ffjord.md"), encoding="utf-8") as fh:
        assert committed in fh.read()
