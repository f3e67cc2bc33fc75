"""Lesson 10's grid on each sweep engine: wall time, and whether every row equals the results
file's (results/what_matters.csv) bit for bit.

    .venv/bin/python benchmarks/sweep_engines.py --envs CartPole-v1 --engines local processes ray

On this project's machines the Ray engine must stay on loopback, so run it in a network
namespace of its own (as root): ``unshare -n bash -c 'ip link set lo up; .venv/bin/python
benchmarks/sweep_engines.py ...'``. Each engine writes its own CSV in a temporary directory,
so nothing is resumed from the file it is compared with. The measurements (and the machine)
are appended to results/what_matters.json under "engines".
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import datetime, timezone

from ppo_lib.ablations import ENV_IDS, RESULTS, load_results, machine, run_ablations

COMPARED = ("eval_mean", "ep_rew_mean", "curve_steps", "curve_ep_rew_mean", "error")
KEY = ["env_id", "total_timesteps", "variant", "changes", "seed"]


def unequal_rows(fresh, stored) -> int:
    """How many of ``fresh``'s rows differ from the stored row of the same run (or lack one)."""
    stored = {tuple(row[k] for k in KEY): row for row in stored.to_dict("records")}
    return sum(1 for row in fresh.to_dict("records")
               if any(stored.get(tuple(row[k] for k in KEY), {}).get(column, object())
                      != row[column] for column in COMPARED))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=list(ENV_IDS), choices=ENV_IDS)
    parser.add_argument("--engines", nargs="+", default=["local", "processes", "ray"])
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    stored = load_results()
    record = dict(date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  machine={**machine(), "cores": os.cpu_count()}, envs=args.envs,
                  seeds=args.seeds, runs={})
    for engine in args.engines:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            frame = run_ablations(args.envs, range(args.seeds), engine=engine,
                                  results=os.path.join(folder, "rows.csv"))
            wall = time.perf_counter() - start
        different = unequal_rows(frame, stored)
        record["runs"][engine] = dict(rows=len(frame), wall_seconds=round(wall, 1),
                                      rows_unequal_to_file=different)
        print(f"{engine:>9}: {len(frame)} runs in {wall:.0f} s wall; "
              f"{len(frame) - different} of {len(frame)} rows equal the file's bit for bit",
              flush=True)
    sidecar = RESULTS.with_suffix(".json")
    data = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    data.setdefault("engines", []).append(record)
    sidecar.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
