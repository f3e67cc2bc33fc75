"""ppo_lib: a small, readable, fast PPO library that backs the ppo-course lessons."""

# The trainer's main names, imported on first use so that `import ppo_lib` stays light.
_LAZY = {
    "PPO": ("ppo", "PPO"),
    "evaluate_policy": ("evaluation", "evaluate_policy"),
    "make_vec_env": ("envs", "make_vec_env"),
    "linear_schedule": ("schedules", "linear_schedule"),
    "train_seeds": ("lockstep", "train_seeds"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'ppo_lib' has no attribute {name!r}")
