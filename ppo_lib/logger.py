"""The training log: one row per update with Stable-Baselines3's keys (lesson 07).

``model.logger.rows`` is a list of dicts; ``model.logger.get("train/approx_kl")`` is one
column. With ``tensorboard_log`` the same rows go to TensorBoard event files; with
``verbose=1`` each row prints as a short table.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from .diagnostics import METRIC_KEYS, explained_variance

# Keys some rows have: train/std (Gaussian policies), train/clip_range_vf (value clipping).
EXTRA_KEYS = ("train/std", "train/clip_range_vf", "time/iterations", "time/time_elapsed")


class Logger:
    """Rows of metrics, optionally mirrored to TensorBoard and to the terminal."""

    def __init__(self, tensorboard_log: str | None = None, verbose: int = 0,
                 run_name: str = "PPO"):
        self.rows: list[dict[str, float]] = []
        self.verbose = verbose
        self.writer = None
        self.log_dir = None
        if tensorboard_log is not None:
            self.log_dir = _next_run_dir(tensorboard_log, run_name)
            from torch.utils.tensorboard import SummaryWriter  # imported only when used
            self.writer = SummaryWriter(self.log_dir)

    def record(self, row: dict[str, float]) -> None:
        """Append one update's row (and write it to TensorBoard / print it)."""
        self.rows.append(dict(row))
        if self.writer is not None:
            step = int(row.get("time/total_timesteps", len(self.rows)))
            for key, value in row.items():
                if isinstance(value, (int, float)) and not math.isnan(value):
                    self.writer.add_scalar(key, value, step)
            self.writer.flush()
        if self.verbose >= 1:
            print(format_row(row))

    def get(self, key: str) -> list[float]:
        """The column ``key`` over all rows (NaN where a row lacks it)."""
        known = set(METRIC_KEYS) | set(EXTRA_KEYS) | {key for row in self.rows for key in row}
        if key not in known:
            raise KeyError(f"unknown logger key {key!r}; known keys: {sorted(known)}")
        return [row.get(key, float("nan")) for row in self.rows]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"Logger({len(self.rows)} rows)"


def rollout_row(env) -> dict[str, float]:
    """SB3's rollout keys: the mean return and length of the env's recent episodes."""
    returns, lengths = env.episode_returns, env.episode_lengths
    return {"rollout/ep_rew_mean": float(np.mean(returns)) if returns else float("nan"),
            "rollout/ep_len_mean": float(np.mean(lengths)) if lengths else float("nan")}


def train_row(logged, kls, last_loss, rollout, policy, n_updates, learning_rate, clip_range,
              clip_range_vf) -> dict[str, float]:
    """SB3's train keys for one update. ``logged``: per minibatch a tensor (policy loss,
    value loss, -entropy, clip fraction), or those stacked as columns of one (4, M) tensor;
    ``kls``: the last epoch's approx_kl tensors. Converted to Python floats here, once per
    update."""
    table = logged if isinstance(logged, torch.Tensor) else torch.stack(logged, 1)
    pg_losses, value_losses, entropy_losses, clip_fractions = table.tolist()
    row = {
        "train/approx_kl": float(np.mean(torch.stack(kls).tolist())),
        "train/clip_fraction": float(np.mean(clip_fractions)),
        "train/clip_range": float(clip_range),
        "train/entropy_loss": float(np.mean(entropy_losses)),
        "train/explained_variance": explained_variance(rollout.values, rollout.returns),
        "train/learning_rate": float(learning_rate),
        "train/loss": last_loss,
        "train/n_updates": n_updates,
        "train/policy_gradient_loss": float(np.mean(pg_losses)),
        "train/value_loss": float(np.mean(value_losses)),
    }
    if clip_range_vf is not None:
        row["train/clip_range_vf"] = float(clip_range_vf)
    log_std = getattr(policy, "log_std", None)
    if isinstance(log_std, torch.Tensor):
        row["train/std"] = log_std.detach().exp().mean().item()
    return row


def _next_run_dir(root: str, name: str) -> str:
    """root/name_1, root/name_2, ... as SB3 numbers its runs."""
    os.makedirs(root, exist_ok=True)
    taken = [d for d in os.listdir(root) if d.startswith(name + "_")]
    numbers = [int(d.rsplit("_", 1)[1]) for d in taken if d.rsplit("_", 1)[1].isdigit()]
    return os.path.join(root, f"{name}_{max(numbers, default=0) + 1}")


def format_row(row: dict[str, float]) -> str:
    """SB3's box table of one row."""
    lines = []
    for key in sorted(row, key=lambda k: (k.split("/")[0], k)):
        value = row[key]
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        lines.append(f"| {key:<30} | {text:>10} |")
    bar = "-" * len(lines[0]) if lines else ""
    return "\n".join([bar, *lines, bar])
