"""One PPO gradient step on CartPole's zoo batch (256 samples, two 64x64 MLPs): the
written-out step (model.fast_path = True, ppo_lib.fastpath) against the reference path.

    .venv/bin/python benchmarks/gradient_step.py [--repeats 30]

Both run through ``PPO.train`` on the same rollout, alternating in one process (so a
busy machine slows both alike); printed per gradient step, with logging and advantage
normalisation included.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ppo_lib import presets
from ppo_lib.ppo import PPO


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, **presets.get("cartpole_tuned"))
    model.learn(2048)  # a real rollout and warmed-up optimizer state
    per_step = {True: [], False: []}
    for _ in range(args.repeats):
        for written_out in (True, False):
            model.fast_path = written_out  # False: the reference path of the lessons
            start = time.perf_counter()
            for _ in range(5):
                model.train(0.5)
            per_step[written_out].append((time.perf_counter() - start) * 1e6
                                         / (5 * model.n_epochs))
    fast, ref = statistics.median(per_step[True]), statistics.median(per_step[False])
    print(f"written-out step: {fast:.0f} us   autograd step: {ref:.0f} us   "
          f"ratio {ref / fast:.2f} (medians of {args.repeats})")


if __name__ == "__main__":
    main()
