"""What the studies share (studies/common.py) and the CLI flags generated from the study configs."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import pytest

from taynode import cli
from taynode.studies import (
    cast,
    csv_text,
    ffjord,
    latent,
    markdown_rows,
    mnist,
    order,
    preset,
    toy,
    with_x64,
    write_json,
    write_table,
)


def test_preset_lookup_and_errors():
    cfg = preset(ffjord.PRESETS, "tiny", iters=7, seed=None)  # None: not given
    assert cfg.iters == 7 and cfg.seed == ffjord.PRESETS["tiny"].seed and cfg.hidden == (16,)
    with pytest.raises(
        ValueError, match=r"unknown preset 'huge'; valid: \['cpu', 'digits', 'miniboone', 'mnist', 'mnist-long', 'tiny'\]"
    ):
        preset(ffjord.PRESETS, "huge")
    with pytest.raises(ValueError, match=r"unknown MNIST settings \['epochz'\]"):
        mnist.config("fig", epochz=3)
    # the MNIST presets keep their name and their overrides of the defaults
    assert (
        mnist.config("fig").preset == "fig" and mnist.config("fig").epochs == 2 and mnist.config("small") == mnist.MNISTConfig()
    )
    assert mnist.config("long", seed=1) == dataclasses.replace(
        mnist.PRESETS["full"], preset="long", epochs=40, lr_drops=(30, 35), seed=1
    )


def test_with_x64_is_scoped():
    was = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    try:
        inside = with_x64(lambda: (jnp.ones(2).dtype, cast({"w": jnp.ones(2, jnp.float32), "n": 3}, jnp.float64)))()
        assert inside[0] == jnp.float64 and inside[1]["w"].dtype == jnp.float64 and inside[1]["n"] == 3
        assert not jax.config.jax_enable_x64 and jnp.ones(2).dtype == jnp.float32  # the caller's setting is back
    finally:
        jax.config.update("jax_enable_x64", was)


def test_order_study_leaves_x64_alone():
    was = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    try:
        s = order.run_study(order.OrderConfig(degrees=(0, 2), solvers=("bosh3",), trajectories=1, dim=1))
        assert not jax.config.jax_enable_x64
        assert s["rows"][1]["max_rel_error"] < 1e-9  # float64 accuracy: float32 would give ~1e-7
    finally:
        jax.config.update("jax_enable_x64", was)


def test_atomic_writers_and_tables(tmp_path):
    rows = [{"a": 1, "b": 0.5}, {"a": 2, "c": "x"}]
    assert csv_text(rows) == "a,b,c\r\n1,0.5,\r\n2,,x\r\n"
    assert csv_text(rows, ["a"], lineterminator="\n") == "a\n1\n2\n"
    assert (
        markdown_rows(rows, fmt=lambda v: "–" if v is None else str(v))
        == "| a | b | c |\n|---|---|---|\n| 1 | 0.5 | – |\n| 2 | – | x |\n"
    )
    write_table(str(tmp_path / "t"), "# md\n", rows)
    write_json(str(tmp_path / "r.json"), {"x": float("inf")})
    assert sorted(os.listdir(tmp_path)) == ["r.json", "t.csv", "t.md"]
    assert (tmp_path / "t.md").read_text() == "# md\n" and (tmp_path / "r.json").read_text() == '{\n  "x": Infinity\n}'


def _help(*argv):
    with pytest.raises(SystemExit):
        cli.main([*argv, "--help"])


def test_cli_help_comes_from_the_configs(capsys):
    _help("study", "mnist-fig3")
    out = " ".join(capsys.readouterr().out.split())
    assert all(f"{p} (" in out for p in mnist.PRESETS)  # every preset, fig included
    assert "--epochs EPOCHS training epochs (default: the preset's: small 5, fig 2, full 20, paper 160, long 40)" in out
    _help("train", "mnist")
    out = " ".join(capsys.readouterr().out.split())
    assert "sigmoid or softplus (the paper's) or tanh (default sigmoid)" in out
    _help("demo")
    out = " ".join(capsys.readouterr().out.split())
    assert f"(default {toy.ToyConfig().iters})" in out and "--samples SAMPLES" in out
    _help("study", "latent-ode")
    out = " ".join(capsys.readouterr().out.split())
    assert f"paper {latent.PRESETS['paper'].epochs}" in out and "cpu 120" in out
    for command in ("demo", "study", "train", "eval", "compare-solvers"):
        assert f"taynode {command}" in cli.__doc__


def test_cli_flags_need_documented_fields():
    @dataclasses.dataclass(frozen=True)
    class Undocumented:
        steps: int = 3

    import argparse

    with pytest.raises(TypeError, match="Undocumented.steps has no help text"):
        cli._add_config_flags(argparse.ArgumentParser(), Undocumented, ("steps",))
