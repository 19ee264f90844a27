"""Command line: ``taynode demo`` (the paper's Fig. 1), ``taynode study <name>`` (Figs. 2-8, Table 2),
``taynode train mnist``, ``taynode eval`` (an MNIST checkpoint) and ``taynode compare-solvers``.

The commands are registered once (:data:`taynode.studies.commands.COMMANDS`); the parser is
built by walking them. The flags that set a study's configuration are generated from its config
dataclass: the flag ``--train-tol`` sets the field ``train_tol``, its help is the field's
documentation (:func:`taynode.studies.setting`) and the default it shows is read from the config
(or from each preset), so the help cannot drift from the code. A command's exit status is
non-zero when any of its runs failed. Process-wide JAX settings are chosen here, not in the
library: every command runs with 64-bit types enabled (the studies evaluate in float64), and
compiled programs are cached on disk (``$XDG_CACHE_HOME/taynode/jax``, default
``~/.cache/taynode/jax``; ``TAYNODE_NO_COMPILE_CACHE=1`` turns the cache off).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import re
import sys

import jax

from . import __version__
from .compile_cache import enable_compile_cache
from .studies.commands import COMMANDS, GROUPS, Command, show
from .train.parallel import DistributedError

__all__ = ["build_parser", "main"]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _flag_type(f: dataclasses.Field, examples: list) -> tuple[type, str | None]:
    """argparse's ``type`` and ``nargs`` for the config field ``f`` (``examples``: its values)."""
    annotation = f.type.__name__ if isinstance(f.type, type) else str(f.type)  # a string under postponed annotations
    base = annotation.replace(" | None", "").replace("None | ", "").strip()
    if base.startswith("tuple"):
        elems = [x for v in examples if isinstance(v, tuple) for x in v]
        return (type(elems[0]) if elems else str), "+"
    types = {"int": int, "float": float, "str": str}
    if base not in types:
        raise TypeError(f"config field {f.name} of type {f.type!r} has no command-line form")
    return types[base], None


def _add_config_flags(parser: argparse.ArgumentParser, cls: type, names, presets: dict | None = None, **extra) -> None:
    """``--<name>`` for each field ``names`` of the config dataclass ``cls``, with the field's
    help and its default (one value, or each preset's); unset flags stay ``None`` (the config's
    value is used). ``extra``: argparse keywords per field (e.g. ``choices``)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in names:
        f = fields[name]
        if "help" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{name} has no help text: declare it with taynode.studies.setting(default, help)")
        values = {p: getattr(c, name) for p, c in presets.items()} if presets else {"": f.default}
        typ, nargs = _flag_type(f, list(values.values()))
        shown = {show(v) for v in values.values()}
        if len(shown) == 1:
            default = f"default {shown.pop()}"
        else:
            default = "default: the preset's: " + ", ".join(f"{p} {show(v)}" for p, v in values.items())
        kw = dict(type=typ, help=f"{f.metadata['help']} ({default})".replace("%", "%%")) | ({"nargs": nargs} if nargs else {})
        parser.add_argument(_flag(name), dest=name, **kw | extra.get(name, {}))


def _given(ns: argparse.Namespace, names) -> dict:
    """The flags of ``names`` that were given (unset ones left out), lists as tuples."""
    out = {}
    for k in names:
        v = getattr(ns, k)
        if v is not None:
            out[k] = tuple(v) if isinstance(v, list) else v
    return out


def _add_command(p: argparse.ArgumentParser, cmd: Command) -> None:
    """The arguments of one registered command."""
    if cmd.preset is not None:
        names = ", ".join(f"{k} ({cmd.preset_notes[k]})" if k in cmd.preset_notes else k for k in cmd.presets)
        p.add_argument("--preset", default=cmd.preset, help=f"one of: {names} (default {cmd.preset})")
    if cmd.out is not None:
        p.add_argument("--out", default=cmd.out, help=f"{cmd.out_help} (default {cmd.out})")
    if cmd.arguments is not None:
        cmd.arguments(p)
    if cmd.options:
        _add_config_flags(p, cmd.config, cmd.options, cmd.presets, **cmd.flags)
    if cmd.resume is not None:
        p.add_argument("--resume", action="store_true", help=cmd.resume)
    if cmd.progress:
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(command_entry=cmd)


def _plain(doc: str) -> str:
    """A docstring without its Sphinx markup (roles such as :func:`x`, literals in double backquotes)."""
    return re.sub(r":\w+:`~?([^`]+)`", r"\1", doc).replace("``", "")


def build_parser() -> argparse.ArgumentParser:
    """The ``taynode`` parser: one subcommand per entry of :data:`~taynode.studies.commands.COMMANDS`."""
    p = argparse.ArgumentParser(prog="taynode", description=_plain(__doc__))
    p.add_argument("--version", action="version", version=f"taynode {__version__}")
    p.add_argument("--debug", action="store_true", help="show the full Python traceback of an error")
    top = p.add_subparsers(dest="command", required=True)
    groups = {}
    for cmd in COMMANDS:
        parent = top
        if len(cmd.path) == 2:
            group = cmd.path[0]
            if group not in groups:
                groups[group] = top.add_parser(group, help=GROUPS[group]).add_subparsers(dest=group, required=True)
            parent = groups[group]
        _add_command(parent.add_parser(cmd.path[-1], help=cmd.help), cmd)
    return p


# Errors that describe bad input or a missing resource: shown as one line, not a traceback.
# (ValueError covers CheckpointError and DataError, NotImplementedError UnsupportedPrimitiveError,
# FloatingPointError NonFiniteLossError, RuntimeError JuliaUnavailableError and JAX's runtime
# checks, e.g. the solver's "maximum number of steps" error.)
_USER_ERRORS = (ValueError, TypeError, OSError, NotImplementedError, FloatingPointError, RuntimeError)


def _first_part(msg: str) -> str:
    """The message without the explanation that JAX/equinox runtime errors append after a
    line of dashes."""
    lines = []
    for line in msg.strip().splitlines():
        if line.startswith("----"):
            break
        lines.append(line)
    return "\n".join(lines).strip()


def main(argv: list[str] | None = None) -> int:
    """Run ``taynode`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status: 0, 1 when
    a run failed, 2 for an error (shown in one line unless ``--debug``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line
    argv = [a for a in argv if a != "--debug"]
    try:
        return _main(argv)
    except _USER_ERRORS as e:
        if debug:
            raise
        msg = _first_part(str(e)) or type(e).__name__
        print(f"taynode: error: {msg} (run with --debug for the traceback)", file=sys.stderr)
        return 2


def _main(argv: list[str]) -> int:
    ns = build_parser().parse_args(argv)
    jax.config.update("jax_enable_x64", True)  # the entry point's choice (README: float64 evaluation)
    enable_compile_cache()  # before anything compiles; a warm run loads the programs from disk
    # What is loaded by now lives as long as the process: out of the cyclic GC's full passes, which
    # tracing's many objects trigger (about a tenth of a warm `taynode demo`'s CPU time went to them).
    gc.collect()
    gc.freeze()
    cmd = ns.command_entry
    try:
        return cmd.run(ns, _given(ns, cmd.options))
    except DistributedError as e:
        print(f"taynode: {e}", file=sys.stderr, flush=True)
        os._exit(1)  # not JAX's exit-time shutdown, which would wait for the dead peer and then abort


if __name__ == "__main__":
    sys.exit(main())
