"""A saved model's non-tensor parts as plain data (``ppo_lib.persistence``): gymnasium spaces
and numpy objects turned into what ``torch.load(path, weights_only=True)`` reads (tensors,
dicts, lists, numbers, strings), and back.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

SPACE_ARGS = {"Discrete": ("n", "start"), "MultiDiscrete": ("nvec", "start"),  # spaces besides
              "MultiBinary": ("n",)}  # Box, saved as {"kind": name, argument: value, ...}


def space_to_data(space: spaces.Space) -> dict:
    """A space as {"kind": "Box", "low", "high", "dtype"} or {"kind": name, argument: ...}."""
    if isinstance(space, spaces.Box):
        return {"kind": "Box", "low": torch.from_numpy(np.array(space.low, dtype=np.float64)),
                "high": torch.from_numpy(np.array(space.high, dtype=np.float64)),
                "dtype": str(space.dtype)}
    for kind, args in SPACE_ARGS.items():
        if isinstance(space, getattr(spaces, kind)):
            return {"kind": kind, **{a: np.asarray(getattr(space, a)).tolist() for a in args}}
    raise ValueError(f"cannot save a model for the space {space}")


def space_from_data(data: dict) -> spaces.Space:
    """The space ``space_to_data`` described."""
    if data["kind"] in SPACE_ARGS:
        return getattr(spaces, data["kind"])(**{a: data[a] for a in SPACE_ARGS[data["kind"]]})
    return spaces.Box(data["low"].numpy().astype(data["dtype"]),
                      data["high"].numpy().astype(data["dtype"]), dtype=np.dtype(data["dtype"]))


def pack(obj):
    """numpy arrays -> tagged tensors, tuples -> tagged lists (torch.load weights_only
    reads tensors, dicts, lists and numbers, not numpy objects)."""
    if isinstance(obj, np.ndarray):
        dtype = str(obj.dtype)
        arr = obj.astype(np.int64) if obj.dtype.kind in "iu" else obj
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(arr)), "dtype": dtype}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: pack(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return {"__tuple__": [pack(v) for v in obj]}
    if isinstance(obj, list):
        return [pack(v) for v in obj]
    return obj


def unpack(obj):
    """What ``pack`` was given."""
    if isinstance(obj, dict):
        if "__ndarray__" in obj:
            return obj["__ndarray__"].numpy().astype(obj["dtype"])
        if "__tuple__" in obj:
            return tuple(unpack(v) for v in obj["__tuple__"])
        return {k: unpack(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unpack(v) for v in obj]
    return obj
