"""The notebook lab: plots (``plotting``), sliders (``widgets``), the live training
dashboard (``dashboard``), episode animations (``animation``) and Stable-Baselines3 side by
side (``sb3``).

The lab is the only part of ppo_lib that imports matplotlib, ipywidgets or stable_baselines3
(tests/test_layering.py checks it): ``plotting``, ``widgets``,
``dashboard`` and ``animation`` draw with matplotlib; ``widgets`` and the dashboard's
``mode="widget"`` use ipywidgets; ``widgets``, ``dashboard`` and ``animation`` show through
IPython.display; and ``sb3`` drives Stable-Baselines3. The library itself (trainer, maths,
sweeps) runs without any of them.
"""
