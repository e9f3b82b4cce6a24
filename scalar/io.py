"""Saving and moving scalar networks: HDF5 checkpoints and export to/from the vectorized MLP.

This is the scalar tier's only bridge to NumPy and to the vectorized tier. The vectorized
tier is imported inside the export functions, so the scalar tier itself never depends on it.
Weights travel under the vectorized MLP's names ('0.weight' (out, in), '0.bias' (out,), ...),
so checkpoints and exports interoperate between the tiers.
"""
from __future__ import annotations

import random

import numpy as np

from common.checkpoint import Checkpoint, check_compatible, load_checkpoint, save_checkpoint
from common.errors import CheckpointError, UserError
from scalar.network import Network


def state_arrays(network: Network) -> dict[str, np.ndarray]:
    """The network's state dict as float64 NumPy arrays."""
    return {k: np.array(v, dtype=np.float64) for k, v in network.state_dict().items()}


# ---------------------------------------------------------------------- scalar <-> vectorized
_VECTORIZED_NAMES = {"ReLU": "relu", "LeakyReLU": "leaky_relu", "Sigmoid": "sigmoid", "Tanh": "tanh",
                     "GELU": "gelu", "Identity": "linear"}


def to_vectorized(network: Network, dtype=np.float64):
    """The same MLP as a vectorized ``Sequential`` (Linear, activation, [Dropout], ...).

    float64 by default, so its outputs equal the scalar network's to rounding.
    """
    from vectorized.mlp import build_mlp
    c = network.config
    model = build_mlp(c["input_size"], c["num_classes"], c["hidden_sizes"], c["activations"], c["dropouts"])
    model.astype(dtype)
    model.load_state_dict(state_arrays(network))
    return model


def from_vectorized(model, seed: int = 0) -> Network:
    """A scalar Network with the weights of a vectorized MLP built by ``build_mlp`` (no batch norm)."""
    linears, activations, dropouts = [], [], []
    for layer in model:
        kind = type(layer).__name__
        if kind == "Linear":
            linears.append(layer)
            activations.append("linear")
            dropouts.append(0.0)
        elif kind in _VECTORIZED_NAMES and linears:
            if kind == "LeakyReLU" and layer.negative_slope != 0.01:
                raise UserError("the scalar tier's leaky_relu has slope 0.01; "
                                f"this model uses {layer.negative_slope}")
            if kind == "GELU" and layer.approximate != "none":
                raise UserError("the scalar tier has the exact GELU only, not approximate='tanh'")
            activations[-1] = _VECTORIZED_NAMES[kind]
        elif kind == "Dropout" and linears:
            dropouts[-1] = layer.p
        else:
            raise UserError(f"cannot turn a {kind} layer into the scalar tier (Linear, activations "
                            "and Dropout only)")
    if activations[-1] != "linear":
        raise UserError("the model must end with a Linear layer that gives the logits")
    net = Network(linears[0].in_features, linears[-1].out_features,
                  [lin.out_features for lin in linears[:-1]], activations[:-1] or "relu",
                  dropouts[:-1] or 0.0, seed=seed)
    net.load_state_dict(model.state_dict())
    return net


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
