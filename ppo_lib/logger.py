"""The training log: one row per update with Stable-Baselines3's keys (lesson 07).

``model.logger.rows`` is a list of dicts; ``model.logger.get("train/approx_kl")`` is one
column. With ``tensorboard_log`` the same rows go to TensorBoard event files; with
``verbose=1`` each row prints as a short table.
"""

from __future__ import annotations

import math
import os

from .diagnostics import METRIC_KEYS

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
