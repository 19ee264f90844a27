r"""Data parallelism for :func:`taynode.train.train`, on JAX's own machinery.

A :class:`DataParallel` holds a one-axis :class:`jax.sharding.Mesh` (axis ``"batch"``) over the
devices used. The global batch is split along its leading axis, one block per device (in a
multi-process run each process feeds only the rows of its own devices); parameters, optimizer
state and PRNG keys are replicated; every process computes the same update.

Two ways to run the step (``sharding``):

``"global"`` (the default)
    The step is ``jax.jit`` of the single-device step, with the batch sharded
    (:class:`~jax.sharding.NamedSharding`). XLA's SPMD partitioner keeps the single-device
    semantics: an adaptive solve takes *one* step-size sequence for the whole global batch, so
    its error norm (an RMS over the whole state) is reduced across devices at every solver step,
    and the parameter gradient is summed across devices by the partitioner. Same seed and
    global batch → the same trajectory as one device, up to floating-point reduction order.
``"per-shard"``
    The step is :func:`jax.shard_map`: each device runs ``loss_fn`` on its own rows, with its own
    adaptive solve (no communication inside the solve; the slowest shard sets the pace) and a
    key ``fold_in(key, shard index)``; the loss, metrics and gradients are averaged with one
    ``pmean`` each. This equals the single-device step only for fixed-grid solvers and losses
    that are means over examples, and only in distribution for noise drawn from the key.

``benchmarks/data_parallel.py`` measures both on the MNIST classifier (README: "Several devices
and hosts"); the numbers there chose the default.

Several processes (hosts): :func:`init_distributed` (before any other JAX call) wraps
:func:`jax.distributed.initialize` with stated time limits and turns its failures into
:class:`DistributedError` naming the problem. CPU processes talk through JAX's gloo collectives.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ..ode import failures

__all__ = [
    "AXIS",
    "SHARDINGS",
    "DataParallel",
    "DistributedError",
    "init_distributed",
    "is_writer",
    "nfe_across_shards",
    "update",
]

AXIS = "batch"
SHARDINGS = ("global", "per-shard")


class DistributedError(RuntimeError):
    """The multi-process runtime could not start, or a peer process failed during training."""


def is_writer() -> bool:
    """Whether this process writes files (checkpoints, logs): process 0 only."""
    return jax.process_index() == 0


def _reachable(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def init_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout: int = 60,
    heartbeat_timeout: int = 30,
) -> None:
    """Join a multi-process run: :func:`jax.distributed.initialize` with time limits.

    Arguments left ``None`` come from JAX's environment variables (``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``) or a cluster JAX detects (SLURM, ...). Process 0
    runs the coordination service on ``coordinator`` = ``HOST:PORT``; every process connects to it.

    Args:
        timeout: seconds a process waits for all others to connect (JAX's
            ``initialization_timeout``); a coordinator that cannot be reached fails after it.
        heartbeat_timeout: seconds without a heartbeat after which a process counts as dead; the
            survivors then stop with an error instead of waiting forever.

    Raises:
        DistributedError: the coordinator was not reached, or the arguments are inconsistent.
    """
    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and os.environ.get("JAX_NUM_PROCESSES"):
        num_processes = int(os.environ["JAX_NUM_PROCESSES"])
    if process_id is None and os.environ.get("JAX_PROCESS_ID"):
        process_id = int(os.environ["JAX_PROCESS_ID"])
    if coordinator is not None:
        host, sep, port = coordinator.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise DistributedError(f"coordinator must be HOST:PORT (e.g. 10.0.0.1:1234), got {coordinator!r}")
    if num_processes is not None and (num_processes < 1 or process_id is None or not 0 <= process_id < num_processes):
        raise DistributedError(
            f"need 0 <= process_id < num_processes, got process_id={process_id}, num_processes={num_processes}"
        )
    if coordinator is not None and num_processes is not None:
        _check_coordinator(coordinator, process_id, num_processes, timeout)
    try:
        jax.distributed.initialize(
            coordinator,
            num_processes,
            process_id,
            initialization_timeout=int(timeout),
            heartbeat_timeout_seconds=int(heartbeat_timeout),
        )
    except Exception as e:  # XlaRuntimeError, ValueError (JAX aborts the process on some failures instead)
        raise DistributedError(
            f"could not join the multi-process run at {coordinator} as process {process_id} of {num_processes} within {timeout} s "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). Start every process with the same "
            "--coordinator HOST:PORT and --num-processes, each with its own --process-id."
        ) from None


def _check_coordinator(coordinator: str, process_id: int, num_processes: int, timeout: float) -> None:
    """Fail with a clear message where JAX would abort the process (it ends with a fatal log
    line, "DEADLINE_EXCEEDED ... RegisterTask", when the coordinator never answers)."""
    host, _, port = coordinator.rpartition(":")
    host = host.strip("[]")
    if process_id == 0:
        try:
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("", int(port)))
        except OSError as e:
            raise DistributedError(
                f"process 0 runs the coordinator on port {port}, but cannot listen there ({e}); choose a free "
                "port for --coordinator"
            ) from None
        print(
            f"taynode: process 0 of {num_processes}: coordinator on {coordinator}; waiting up to {timeout} s for the others "
            "(JAX ends this process with DEADLINE_EXCEEDED if they do not come)",
            file=sys.stderr,
            flush=True,
        )
        return
    deadline = time.monotonic() + timeout
    while not _reachable(host, int(port), 1.0):
        if time.monotonic() > deadline:
            raise DistributedError(
                f"process {process_id}: the coordinator {coordinator} could not be reached within {timeout} s "
                "(nothing accepts connections there). Start process 0 with the same --coordinator HOST:PORT, "
                "check the host name and that the port is open, or raise the timeout."
            )
        time.sleep(0.5)


@contextlib.contextmanager
def equinox_shard_map_fix():
    """Tracing diffrax's backward pass inside :func:`jax.shard_map` with equinox 0.13.8 fails:
    equinox's closure conversion compares argument types *including* their sharding, and inside
    shard_map a fresh constant carries the manual mesh while the stored example does not ("Closure-
    converted function called with different dynamic arguments"; diffrax issue #765, equinox
    pull request #1261, open). While tracing the per-shard step this drops the sharding from that
    comparison (shape and dtype are still compared), which is the fix proposed there."""
    import equinox._ad as ad

    orig = getattr(ad, "_strip_weak_dtype", None)
    if orig is None:  # equinox changed: nothing to patch (hopefully fixed upstream)
        yield
        return
    ad._strip_weak_dtype = lambda tree: jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)
    try:
        yield
    finally:
        ad._strip_weak_dtype = orig


def update(loss_fn, optimizer, model, opt_state, batch, key, extra=(), reduce=lambda t: t):
    """One optimizer step: ``(model, opt_state, loss, aux, finite, failure)``, with ``finite`` whether
    the update is finite and ``failure`` the :class:`~taynode.ode.failures.Failure` of the solves
    ``loss_fn`` traced (returned, not raised inside the program, so the compiled step can be kept in
    JAX's persistent cache: the caller raises). ``reduce`` combines the loss, metrics and gradients
    across shards (a ``pmean``; none on one device)."""
    collected = failures.collect(loss_fn)

    def loss_and_failure(*inputs):
        (loss, aux), failure = collected(*inputs)
        return loss, (aux, failure)

    (loss, (aux, failure)), grads = eqx.filter_value_and_grad(loss_and_failure, has_aux=True)(model, batch, key, *extra)
    loss, aux, grads = reduce(loss), jax.tree_util.tree_map(reduce, aux), reduce(grads)
    updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_inexact_array))
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(u)) for u in jax.tree_util.tree_leaves(updates)]))
    return eqx.apply_updates(model, updates), opt_state, loss, aux, finite, failure


def nfe_across_shards(nfe_per_shard: npt.ArrayLike, examples_per_shard: npt.ArrayLike) -> dict:
    """NFE statistics of one sharded solve from each shard's NFE and example count.

    ``total``: Σᵢ NFEᵢ (evaluations of f in all); ``per_example``: Σᵢ nᵢ·NFEᵢ / Σᵢ nᵢ, the
    evaluations each example went through, averaged (for one shared step-size sequence it is
    the solve's NFE); ``max``/``min``: the spread (the slowest shard sets the pace).
    """
    nfe = np.asarray(nfe_per_shard, np.float64).ravel()
    n = np.broadcast_to(np.asarray(examples_per_shard, np.float64), nfe.shape)
    return dict(
        total=float(nfe.sum()),
        per_example=float((n * nfe).sum() / n.sum()),
        max=float(nfe.max()),
        min=float(nfe.min()),
        shards=len(nfe),
    )


class DataParallel:
    """A one-axis mesh over ``devices`` and the step built on it.

    Args:
        devices: ``None`` (all visible devices, every process's), a number ``N`` (the first N;
            in a multi-process run N must be all of them), or a sequence of devices.
        sharding: ``"global"`` or ``"per-shard"`` (module docstring).
    """

    def __init__(self, devices=None, sharding: str = "global"):
        if sharding not in SHARDINGS:
            raise ValueError(f"sharding must be one of {list(SHARDINGS)}, got {sharding!r}")
        every = jax.devices()
        if devices is None:
            devs = every
        elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
            if not 1 <= devices <= len(every):
                raise ValueError(
                    f"devices={devices}, but {len(every)} device(s) are visible ({every[0].platform}); "
                    f"pass a number in [1, {len(every)}] (on CPU, more devices come from "
                    "XLA_FLAGS=--xla_force_host_platform_device_count=N set before JAX starts)"
                )
            if jax.process_count() > 1 and devices != len(every):
                raise ValueError(f"a multi-process run uses every device of every process ({len(every)}), got devices={devices}")
            devs = every[:devices]
        else:
            devs = list(devices)
        self.devices = list(devs)
        self.mesh = Mesh(np.array(self.devices), (AXIS,))
        self.sharding = sharding
        self.replicated = NamedSharding(self.mesh, P())
        self.split = NamedSharding(self.mesh, P(AXIS))
        self.size = len(self.devices)
        local = [d for d in self.devices if d.process_index == jax.process_index()]
        self.local_size = len(local)
        # This process's rows of the global batch: its devices' blocks, contiguous because the
        # mesh follows jax.devices(), ordered by process.
        first = min((self.devices.index(d) for d in local), default=0)
        self.local_offset = first

    @property
    def single(self) -> bool:
        """One device in one process: the loop then runs exactly the single-device code."""
        return self.size == 1 and jax.process_count() == 1

    def check_batch(self, batch) -> int:
        """The global batch size; a clear error when it does not split evenly over the devices."""
        sizes = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree_util.tree_leaves(batch)}
        if None in sizes or len(sizes) != 1:
            raise ValueError(
                f"data-parallel training needs every array of a batch to share its leading (example) axis, got sizes {sorted(map(str, sizes))}"
            )
        b = sizes.pop()
        if b % self.size:
            ok = [d for d in range(1, self.size + 1) if b % d == 0]
            raise ValueError(
                f"the global batch of {b} examples does not split evenly over {self.size} devices; choose a batch "
                f"size divisible by {self.size} or use devices={max(ok)} (--devices {max(ok)})"
            )
        return b

    def put_batch(self, batch):
        """The global batch as arrays sharded along the batch axis; each process contributes
        only its own rows (the slice of its devices)."""
        b = self.check_batch(batch)
        rows = b // self.size
        lo, hi = self.local_offset * rows, (self.local_offset + self.local_size) * rows

        def put(x):
            x = np.asarray(x)
            return jax.make_array_from_process_local_data(self.split, x[lo:hi], x.shape)

        return jax.tree_util.tree_map(put, batch)

    def replicate(self, tree):
        """Every array leaf of ``tree`` copied to every device (the same value on every process)."""

        def put(x):
            if not eqx.is_array(x):
                return x
            host = np.asarray(x) if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
            if isinstance(host, np.ndarray):
                return jax.make_array_from_callback(host.shape, self.replicated, lambda idx: host[idx])
            return jax.device_put(host, self.replicated)

        return jax.tree_util.tree_map(put, tree)

    def local_copy(self, tree):
        """``tree`` with replicated arrays turned into this process's own (one device) arrays, so
        code that knows nothing about devices (an ``evaluate`` callback) can use it."""
        return jax.tree_util.tree_map(lambda x: jnp.asarray(np.asarray(x)) if eqx.is_array(x) else x, tree)

    def step(self, loss_fn, optimizer):
        """The training step ``(model, opt_state, batch, key, *extra) -> (model, opt_state, loss, aux, finite,
        failure)`` for this mesh (see :func:`update`), jit-compiled; parameters and optimizer state come out
        replicated; ``extra`` (replicated, e.g. λ) goes to ``loss_fn`` after the key."""

        def grads_and_update(model, opt_state, batch, key, reduce, extra=()):
            return update(loss_fn, optimizer, model, opt_state, batch, key, extra, reduce)

        if self.sharding == "global":

            def pin(tree):
                return jax.tree_util.tree_map(
                    lambda x: jax.lax.with_sharding_constraint(x, self.replicated) if eqx.is_array(x) else x, tree
                )

            @eqx.filter_jit
            def step(model, opt_state, batch, key, *extra):
                return pin(grads_and_update(model, opt_state, batch, key, lambda t: t, extra))

            return step

        def pmean(tree):
            return jax.tree_util.tree_map(lambda x: jax.lax.pmean(x, AXIS) if eqx.is_array(x) else x, tree)

        @eqx.filter_jit
        def step(model, opt_state, batch, key, *extra):
            arrays, static = eqx.partition((model, opt_state), eqx.is_array)

            def local(arrays, batch, key, *extra):
                m, o = eqx.combine(arrays, static)
                key = jax.random.fold_in(key, jax.lax.axis_index(AXIS))
                m, o, loss, aux, finite, failure = grads_and_update(m, o, batch, key, pmean, extra)
                finite = jax.lax.pmin(finite.astype(jnp.int32), AXIS).astype(bool)
                failure = eqx.tree_at(lambda f: f.code, failure, jax.lax.pmax(failure.code, AXIS))  # any shard's
                out_arrays, out_static = eqx.partition((m, o), eqx.is_array)
                return out_arrays, loss, aux, finite, failure

            with equinox_shard_map_fix():
                out_arrays, loss, aux, finite, failure = jax.shard_map(
                    local,
                    mesh=self.mesh,
                    in_specs=(P(), P(AXIS), P()) + (P(),) * len(extra),
                    out_specs=(P(), P(), P(), P(), P()),
                    check_vma=False,
                )(arrays, batch, key, *extra)
            m, o = eqx.combine(out_arrays, eqx.partition((model, opt_state), eqx.is_array)[1])
            return m, o, loss, aux, finite, failure

        return step
