"""Saving scalar networks: HDF5 checkpoints.

Weights are saved under the vectorized MLP's names ('0.weight' (out, in), '0.bias' (out,), ...),
so checkpoints interoperate between the tiers (moving a model from one tier to the other lives
above both tiers, in :mod:`parity.convert`).
"""
from __future__ import annotations

import random

import numpy as np

from common.checkpoint import Checkpoint, check_compatible, load_checkpoint, save_checkpoint
from common.errors import CheckpointError
from scalar.network import Network


def state_arrays(network: Network) -> dict[str, np.ndarray]:
    """The network's state dict as float64 NumPy arrays."""
    return {k: np.array(v, dtype=np.float64) for k, v in network.state_dict().items()}


# ---------------------------------------------------------------------- checkpoints
def _rng_state(rng: random.Random) -> dict:
    version, internal, gauss_next = rng.getstate()
    return {"version": version, "internal": np.array(internal, dtype=np.uint32), "gauss_next": gauss_next}


def _set_rng_state(rng: random.Random, state: dict) -> None:
    rng.setstate((int(state["version"]), tuple(int(v) for v in state["internal"]), state["gauss_next"]))


def network_config(network: Network) -> dict:
    c = network.config
    return {"tier": "scalar", "architecture": "mlp", "input_shape": [c["input_size"]],
            "num_classes": c["num_classes"], "hidden_sizes": c["hidden_sizes"],
            "activations": c["activations"], "dropouts": c["dropouts"], "seed": c["seed"]}


def save(path, trainer, config: dict | None = None, extra: dict | None = None):
    """Write the trainer's network, optimizer, epoch/step, history and RNG streams to ``path``."""
    from common.seed import capture_rng_state
    rng = capture_rng_state()
    rng["scalar"] = {"network": _rng_state(trainer.network.rng), "shuffle": _rng_state(trainer.rng)}
    ckpt = Checkpoint(model_state=state_arrays(trainer.network),
                      optimizer_state=trainer.optimizer.state_dict(), scheduler_state={},
                      epoch=trainer.epoch, step=trainer.step, rng_state=rng,
                      history={k: list(v) for k, v in trainer.history.items()},
                      config={**network_config(trainer.network), **(config or {})}, extra=extra or {})
    return save_checkpoint(path, ckpt)


def load(path) -> Checkpoint:
    return load_checkpoint(path)


def network_from_checkpoint(ckpt: Checkpoint) -> Network:
    """A Network built from the checkpoint's config, with its weights."""
    c = ckpt.config
    try:
        net = Network(int(c["input_shape"][-1] if len(c["input_shape"]) == 1 else np.prod(c["input_shape"])),
                      int(c["num_classes"]), c["hidden_sizes"], c["activations"], c["dropouts"],
                      int(c.get("seed", 0)))
    except KeyError as exc:
        raise CheckpointError(f"checkpoint {ckpt.path} has no scalar MLP config ({exc} missing)") from None
    load_weights(net, ckpt)
    return net


def load_weights(network: Network, ckpt: Checkpoint) -> None:
    """Copy the checkpoint's weights into ``network`` after checking that they fit.

    The tier is not compared: weights saved by the vectorized MLP load here too.
    """
    here = network_config(network)
    check_compatible(ckpt, model_shapes=network.state_shapes(), config=here, keys=("input_shape", "num_classes"))
    theirs = ckpt.config.get("activations")
    if theirs is not None and list(theirs) != here["activations"]:
        raise CheckpointError(f"checkpoint {ckpt.path} uses activations {list(theirs)}, "
                              f"this network {here['activations']}")
    network.load_state_dict(ckpt.model_state)


def restore(trainer, ckpt: Checkpoint) -> None:
    """Continue from ``ckpt`` exactly: weights, optimizer state, epoch, step, history and RNGs."""
    from common.seed import restore_rng_state
    load_weights(trainer.network, ckpt)
    if ckpt.optimizer_state:
        trainer.optimizer.load_state_dict(ckpt.optimizer_state)
    trainer.epoch, trainer.step = int(ckpt.epoch), int(ckpt.step)
    for key, values in ckpt.history.items():
        trainer.history[key] = [float(v) for v in values]
    restore_rng_state(ckpt.rng_state)
    scalar_rngs = ckpt.rng_state.get("scalar")
    if scalar_rngs:
        _set_rng_state(trainer.network.rng, scalar_rngs["network"])
        _set_rng_state(trainer.rng, scalar_rngs["shuffle"])
