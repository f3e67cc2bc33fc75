"""The notebook lab: plots, widgets, the live dashboard, episode animations and SB3 side by
side. The only modules of ppo_lib that import matplotlib, ipywidgets or stable_baselines3."""
