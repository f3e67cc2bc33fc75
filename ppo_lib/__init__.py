"""ppo_lib: a small, readable, fast PPO library that backs the ppo-course lessons."""
