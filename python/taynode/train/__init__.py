"""The shared training loop: any equinox model (or pytree of parameters), any optax optimizer,
any loss, with deterministic batches, JSON-lines logs and exact resume from atomic checkpoints.

Typical use::

    from taynode.train import ShuffledBatches, train

    def loss_fn(model, batch, key):          # -> (scalar loss, {name: scalar})
        x, y = batch
        ...
        return loss, {"acc": acc}

    batches = ShuffledBatches((x_train, y_train), batch_size=100, seed=0)
    result = train(model, optax.adam(1e-3), loss_fn, batches, "runs/mine",
                   steps=10 * batches.steps_per_epoch, seed=0, evaluate=my_eval)
    result.model

Run it again with ``resume=True`` after an interruption and it continues from the last
checkpoint to the same parameters, bit for bit, as a run that was never interrupted.
"""

from .batches import ShuffledBatches
from .checkpoint import CheckpointError, CorruptCheckpointError, load_checkpoint, read_meta, save_checkpoint
from .lock import RunLockedError
from .loop import CHECKPOINT, LOG, PREVIOUS, NonFiniteLossError, TrainResult, read_log, train
from .target import LambdaTarget

__all__ = [
    "CHECKPOINT",
    "LOG",
    "PREVIOUS",
    "CheckpointError",
    "CorruptCheckpointError",
    "LambdaTarget",
    "NonFiniteLossError",
    "RunLockedError",
    "ShuffledBatches",
    "TrainResult",
    "load_checkpoint",
    "read_log",
    "read_meta",
    "save_checkpoint",
    "train",
]
