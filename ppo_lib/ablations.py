"""What matters in PPO (lesson 10): each core implementation detail switched off (or on), one
at a time, from a good base configuration, on CartPole-v1 and on a continuous task
(Pendulum-v1), over many seeds. The grid of the lesson, and of the results file it loads:

    python -m ppo_lib.ablations --seeds 10 --engine processes --results results/what_matters.csv

(``--engine ray --address auto`` runs the same grid on a Ray cluster, ``--help`` for the
rest). Every run is ``ppo_lib.sweeps.run_grid``'s: seeded by its seed only, on one torch
thread, so any engine writes the same numbers; re-running the command skips the rows the file
already has.

The study this copies at a learner's scale: Andrychowicz et al. 2021, "What matters in
on-policy reinforcement learning? A large-scale empirical study" (ICLR), 250,000 runs.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from . import presets
from .schedules import linear_schedule

ENV_IDS = ("CartPole-v1", "Pendulum-v1")


# CartPole's base: rl-zoo's set with 5 epochs and a larger step size (what "cartpole_fast"
# was until the vectorised CartPole made a faster set; kept, so results/what_matters.csv stays
# what this module trains).
CARTPOLE_BASE = dict(n_envs=8, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98,
                     n_epochs=5, ent_coef=0.0, learning_rate=linear_schedule(3e-3),
                     clip_range=linear_schedule(0.25))


def base_config(env_id: str) -> dict[str, Any]:
    """The base every variant changes one thing of: ``CARTPOLE_BASE`` (CartPole; learning
    rate and clip range annealed) and ``presets`` "pendulum" with its learning rate annealed
    from 2e-3 (so "constant learning rate" is the same change on both tasks; at 100k steps,
    seeds 0-2 evaluated -146, -132, -131 against -144, -162, -145 with the preset's constant
    1e-3)."""
    if env_id == "CartPole-v1":
        return copy.deepcopy(CARTPOLE_BASE)
    if env_id == "Pendulum-v1":
        return {**presets.get("pendulum"), "learning_rate": linear_schedule(2e-3)}
    raise ValueError(f"env_id must be one of {ENV_IDS}, got {env_id!r}")


# Environment steps per run. CartPole: half the preset's budget, where the base is part way to
# solved (a detail that slows learning shows, as well as one that breaks it); Pendulum: the
# preset's budget (rl-zoo's), where the base has just solved it (about -150).
BUDGETS = {"CartPole-v1": 50_000, "Pendulum-v1": 100_000}


def variants(env_id: str) -> dict[str, dict[str, Any]]:
    """Variant name -> the PPO arguments it changes in ``base_config(env_id)`` ("base"
    changes nothing). The same names on every task, so results can be pooled across tasks."""
    base = base_config(env_id)
    start_lr = base["learning_rate"](1.0)
    return {
        "base": {},
        "no advantage normalisation": dict(normalize_advantage=False),
        "value clipping (0.2)": dict(clip_range_vf=0.2),
        "observation normalisation": dict(normalize_obs=True),
        "reward scaling": dict(normalize_reward=True),
        "no orthogonal init": dict(policy_kwargs=dict(ortho_init=False)),
        "Adam eps 1e-8": dict(policy_kwargs=dict(optimizer_kwargs=dict(eps=1e-8))),
        "constant learning rate": dict(learning_rate=start_lr),
        "no gradient clipping": dict(max_grad_norm=float("inf")),
        "entropy bonus 0.01": dict(ent_coef=0.01),
        "GAE lambda 1 (Monte Carlo)": dict(gae_lambda=1.0),
        "1 epoch": dict(n_epochs=1),
        "minibatches / 4": dict(batch_size=max(1, base["batch_size"] // 4)),
        "2x epochs": dict(n_epochs=2 * base["n_epochs"]),
        "shared network": dict(policy_kwargs=dict(net_arch=dict(shared=[64, 64], pi=[], vf=[]))),
        "ReLU": dict(policy_kwargs=dict(activation_fn=nn.ReLU)),
    }


def run_ablations(env_ids: Iterable[str] = ENV_IDS, seeds: Iterable[int] = range(10),
                  names: Sequence[str] | None = None, engine: str = "local",
                  address: str | None = None, results: str | None = None,
                  total_timesteps: Mapping[str, int] | None = None,
                  n_eval_episodes: int = 10, progress_bar: bool = True):
    """``run_grid`` of the variants ``names`` (all by default) on each task: one DataFrame,
    a row per (task, variant, seed). ``total_timesteps``: {env_id: steps} (BUDGETS by
    default)."""
    import pandas as pd

    from .sweeps import run_grid

    budgets = {**BUDGETS, **(total_timesteps or {})}
    frames = []
    for env_id in env_ids:
        every = variants(env_id)
        unknown = [name for name in (names or []) if name not in every]
        if unknown:
            raise ValueError(f"names: unknown variants {unknown}; known: {list(every)}")
        grid = {name: every[name] for name in (names or every)}
        frames.append(run_grid(base_config(env_id), grid, seeds, env_id=env_id,
                               total_timesteps=budgets[env_id], engine=engine,
                               address=address, results=results,
                               n_eval_episodes=n_eval_episodes, progress_bar=progress_bar))
    return pd.concat(frames, ignore_index=True)


RESULTS = Path(__file__).resolve().parents[1] / "results" / "what_matters.csv"


def load_results(path: str | Path = RESULTS):
    """The full grid's rows (``python -m ppo_lib.ablations``, 10 seeds, both tasks) as
    ``run_ablations`` returns them, from the course repository's results file."""
    import pandas as pd

    from .grid import from_text

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no results file at {str(path)!r}: run `python -m "
                                f"ppo_lib.ablations --results {path}` to make it")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in frame.columns:
        frame[column] = [from_text(text) for text in frame[column]]
    return frame


def machine() -> dict[str, Any]:
    """What a run's low bits depend on: torch's version and the CPU kernels it dispatches to
    (another CPU kind may round differently, and a long run then drifts apart)."""
    import platform

    import torch

    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo()
                  if line.startswith("model name")), platform.processor())
    return dict(torch=torch.__version__, cpu_capability=torch.backends.cpu.get_cpu_capability(),
                cpu=model)


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ppo_lib.ablations",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    parser.add_argument("--engine", default="processes", choices=("local", "processes", "ray"))
    parser.add_argument("--address", default=None, help="a Ray cluster's address (or 'auto')")
    parser.add_argument("--results", default="results/what_matters.csv",
                        help="CSV the rows go to (re-running resumes)")
    parser.add_argument("--envs", nargs="+", default=list(ENV_IDS), choices=ENV_IDS)
    args = parser.parse_args(argv)
    frame = run_ablations(args.envs, range(args.seeds), engine=args.engine,
                          address=args.address, results=args.results)
    print(frame.groupby(["env_id", "variant"], sort=False)["eval_mean"].describe()
          .to_string())


if __name__ == "__main__":
    main()
