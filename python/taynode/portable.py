r"""A model or problem as plain data that JAX, NumPy, torch and Julia can each rebuild.

A *portable description* is a dict:

``{"format": "taynode.portable/1", "kind": "problem", "name": "lotka_volterra"}``
    a named problem from :mod:`taynode.problems`;
``{"format": ..., "kind": "mlp", "activation": "tanh", "weights": [W₀, …], "biases": [b₀, …]}``
    dz/dt = MLP([z, t]) with time concatenated to every layer's input: ``Wᵢ`` has shape
    ``(out, in + 1)`` (time is the last column), the activation follows every layer but the last.

:func:`save` / :func:`load` store it as one ``.npz`` (arrays plus a JSON header), written
atomically. :func:`numpy_field` is an independent NumPy implementation, for SciPy and as a
reference for the other backends; :func:`jax_field` and :func:`torch_field` rebuild the same
field in JAX and torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .atomic import atomic_file
from .inputs import InputError, LazyNpz

if TYPE_CHECKING:
    from .models import MLPDynamics

FORMAT = "taynode.portable/1"
MAX_HEADER_BYTES = 1 << 16

_NP_ACTIVATIONS = {
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "softplus": lambda x: np.logaddexp(x, 0.0),
    "relu": lambda x: np.maximum(x, 0.0),
    "gelu": lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
    "swish": lambda x: x / (1.0 + np.exp(-x)),
}


def problem(name: str) -> dict:
    """The description of the standard problem ``name`` (:mod:`taynode.problems`); ``ValueError`` if there is none."""
    from .problems import get

    get(name)  # validates
    return {"format": FORMAT, "kind": "problem", "name": name}


def from_model(model: MLPDynamics) -> dict:
    """The description of a :class:`taynode.models.MLPDynamics`."""
    return validate(
        {
            "format": FORMAT,
            "kind": "mlp",
            "activation": model.activation,
            "weights": [np.asarray(layer.weight, np.float64) for layer in model.layers],
            "biases": [np.asarray(layer.bias, np.float64) for layer in model.layers],
        }
    )


def _layer_array(x, what: str, ndim: int) -> np.ndarray:
    x = np.asarray(x) if isinstance(x, (np.ndarray, list, tuple)) else x
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f" or x.ndim != ndim:
        got = f"{x.dtype} array of shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"{what} must be a {ndim}-d floating-point array, got {got}")
    return x


def validate(spec: dict) -> dict:
    """``spec`` checked (format, kind, names, every layer's type, shape and finiteness); any
    problem is a ``ValueError`` saying which."""
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise ValueError(f"not a portable description (expected a dict with format {FORMAT!r}): {spec!r:.200}")
    kind = spec.get("kind")
    if kind == "problem":
        if not isinstance(spec.get("name"), str):
            raise ValueError(f"a 'problem' description needs a 'name' string, got {spec.get('name')!r:.100}")
        problem(spec["name"])
        return spec
    if kind != "mlp":
        raise ValueError(f"unknown kind {kind!r:.100}; valid: 'problem', 'mlp'")
    act = spec.get("activation")
    if not isinstance(act, str) or act not in _NP_ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r:.100}; valid: {sorted(_NP_ACTIVATIONS)}")
    Ws, bs = spec.get("weights"), spec.get("biases")
    if not isinstance(Ws, (list, tuple)) or not isinstance(bs, (list, tuple)):
        raise ValueError("an 'mlp' description needs lists 'weights' and 'biases'")
    if len(Ws) != len(bs) or not Ws:
        raise ValueError(f"need one bias per weight matrix and at least one layer, got {len(Ws)} and {len(bs)}")
    Ws = [_layer_array(W, f"layer {i}'s weight", 2) for i, W in enumerate(Ws)]
    bs = [_layer_array(b, f"layer {i}'s bias", 1) for i, b in enumerate(bs)]
    width = Ws[0].shape[1] - 1
    dim = width
    if dim < 1:
        raise ValueError(f"layer 0's weight {Ws[0].shape} leaves no state: it needs (out, d + 1) columns with d >= 1")
    for i, (W, b) in enumerate(zip(Ws, bs)):
        if W.shape[1] != width + 1 or b.shape != (W.shape[0],):
            raise ValueError(f"layer {i}: weight {W.shape} and bias {b.shape} do not fit an input of size {width} plus time")
        if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
            raise ValueError(f"layer {i} has NaN or inf weights")
        width = W.shape[0]
    if width != dim:
        raise ValueError(f"the last layer outputs {width} values for a state of size {dim}")
    return spec | {"weights": Ws, "biases": bs}


def save(spec: dict, path: str) -> None:
    """Write ``spec`` to ``path`` (.npz) atomically: a crash leaves the old file or the new one."""
    spec = validate(spec)
    header = {k: v for k, v in spec.items() if k not in ("weights", "biases")}
    arrays = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    if spec["kind"] == "mlp":
        for i, (W, b) in enumerate(zip(spec["weights"], spec["biases"])):
            arrays[f"weight_{i}"], arrays[f"bias_{i}"] = W, b
    with atomic_file(path, "wb") as fh:
        np.savez(fh, **arrays)


def _read(data: LazyNpz) -> dict:
    head_shape, _ = data.info("header")
    if len(head_shape) != 1 or head_shape[0] > MAX_HEADER_BYTES:
        raise ValueError(f"its header is an array of shape {head_shape}, not at most {MAX_HEADER_BYTES} bytes of JSON")
    spec = json.loads(data.read("header").tobytes().decode())
    if not isinstance(spec, dict):
        raise ValueError(f"its header is a JSON {type(spec).__name__}, not an object")
    if spec.get("kind") == "mlp":
        n = sum(1 for k in data.files if k.startswith("weight_"))
        missing = [k for i in range(n) for k in (f"weight_{i}", f"bias_{i}") if k not in data.files]
        if missing:
            raise ValueError(f"it has {n} weight arrays but lacks {missing[:4]}")
        spec["weights"] = [data.read(f"weight_{i}") for i in range(n)]
        spec["biases"] = [data.read(f"bias_{i}") for i in range(n)]
    return spec


def load(path: str, *, max_bytes: int | None = None) -> dict:
    """The description stored at ``path`` by :func:`save`; a missing, truncated, foreign or
    crafted file raises an error naming it (``FileNotFoundError`` or ``ValueError``, one line).
    Arrays are read lazily, each declared size checked against the input size cap
    (``max_bytes``, ``$TAYNODE_MAX_INPUT_BYTES``; see :mod:`taynode.inputs`) first."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"portable model {path} does not exist")
    try:
        with LazyNpz(path, max_bytes) as data:
            spec = _read(data)
    except (InputError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(
            f"{path} is not a readable portable model (truncated, corrupt, or not written by "
            f"taynode.portable.save): {type(e).__name__}: {e}"
        ) from None
    try:
        return validate(spec)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def numpy_field(spec: dict) -> Callable[[float, np.ndarray], np.ndarray]:
    """``f(t, z)`` in NumPy on a batch ``z`` of shape (batch, d)."""
    spec = validate(spec)
    if spec["kind"] == "problem":
        from . import problems

        jax_f = problems.get(spec["name"])
        return lambda t, z: np.asarray(jax_f(t, z))
    act = _NP_ACTIVATIONS[spec["activation"]]
    Ws, bs = spec["weights"], spec["biases"]

    def f(t, z):
        h = np.asarray(z, np.float64)
        for i, (W, b) in enumerate(zip(Ws, bs)):
            h = np.concatenate([h, np.full(h.shape[:-1] + (1,), t)], -1) @ W.T + b
            if i < len(Ws) - 1:
                h = act(h)
        return h

    return f


def jax_field(spec: dict) -> Callable:
    """``f(t, z, args)`` in JAX: the named problem, or an :class:`MLPDynamics` with these weights."""
    spec = validate(spec)
    if spec["kind"] == "problem":
        from .problems import get

        return get(spec["name"])
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from .models import MLPDynamics

    sizes = [spec["weights"][0].shape[1] - 1] + [W.shape[0] for W in spec["weights"]]
    model = MLPDynamics(sizes, spec["activation"], key=jax.random.PRNGKey(0), dtype=jnp.float64)
    for i, (W, b) in enumerate(zip(spec["weights"], spec["biases"])):
        model = eqx.tree_at(lambda m, i=i: (m.layers[i].weight, m.layers[i].bias), model, (jnp.asarray(W), jnp.asarray(b)))
    return model


def _torch_activations(torch):
    return {
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "softplus": lambda x: torch.logaddexp(x, torch.zeros_like(x)),  # no threshold, unlike F.softplus
        "relu": torch.relu,
        "gelu": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),  # jax.nn.gelu's default
        "swish": lambda x: x * torch.sigmoid(x),
    }


def torch_field(spec: dict) -> Callable:
    """``f(t, z)`` in torch (float64) for a portable description: the same MLP as
    :func:`numpy_field` (time concatenated to every layer's input); named problems from
    :mod:`taynode.array_problems`."""
    import torch

    spec = validate(spec)
    if spec["kind"] == "problem":
        from .array_problems import FIELDS

        fn = FIELDS.get(spec["name"])
        if fn is None:
            raise ValueError(f"problem {spec['name']!r} has no torch implementation")
        return lambda t, z: fn(torch, t, z)
    act = _torch_activations(torch)[spec["activation"]]
    Ws = [torch.tensor(np.array(W), dtype=torch.float64) for W in spec["weights"]]
    bs = [torch.tensor(np.array(b), dtype=torch.float64) for b in spec["biases"]]

    def f(t, z):
        h = z
        for i, (W, b) in enumerate(zip(Ws, bs)):
            tt = torch.as_tensor(t, dtype=h.dtype).expand(h.shape[:-1] + (1,))
            h = torch.cat([h, tt], -1) @ W.T + b
            if i < len(Ws) - 1:
                h = act(h)
        return h

    return f
