"""Atari for PPO (lesson 09): the standard frame preprocessing and the Nature CNN actor-critic.

The pipeline of Mnih et al. (2015), used by the PPO paper's Atari runs and by SB3's
``make_atari_env``, from a 210x160 RGB screen at 60 frames/s to what the agent sees:

    noop reset     1..30 random NOOPs after reset, so episodes do not all start alike
    frame skip 4   repeat each action 4 frames; max-pool the last two (sprites flicker)
    grey scale     y = 0.299 R + 0.587 G + 0.114 B   (ITU-R BT.601, as cv2.COLOR_RGB2GRAY)
    resize 84x84   area averaging (as cv2.INTER_AREA), rounded to uint8
    frame stack 4  the last 4 preprocessed frames, oldest first: (4, 84, 84) uint8
    reward clip    sign(r) for training (scores differ by orders of magnitude across games)

gymnasium's ``AtariPreprocessing`` needs OpenCV (``cv2``), which this course does not
install; ``AtariPreprocess`` below does the same steps in numpy (the resize is two matrix
products, ``area_resize_matrix``), so every step is readable and testable here.

``NatureCNNActorCritic`` is SB3's ``CnnPolicy`` network: a shared trunk of three
convolutions and a 512-unit linear layer, a categorical policy head and a value head.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn

from .distributions import categorical_entropy, categorical_log_prob
from .policies import CategoricalPolicy
from .validation import check_positive_int

GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # R, G, B (BT.601)


# ---------------------------------------------------------------------------------------
# One frame: grey scale and resize.

def to_grey(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB uint8 -> (H, W) float32 luminance y = 0.299 R + 0.587 G + 0.114 B."""
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f"frame must be an RGB image of shape (H, W, 3), got shape "
                         f"{frame.shape}")
    return frame.astype(np.float32) @ GREY_WEIGHTS


def area_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix M such that ``M @ x`` averages x over n_out equal intervals.

    Output pixel i covers the input interval [i s, (i + 1) s) with s = n_in / n_out; each
    input pixel j contributes the length of its overlap with that interval, divided by s
    (area averaging, what cv2.INTER_AREA does when shrinking). Rows sum to 1.
    """
    check_positive_int("n_in", n_in)
    check_positive_int("n_out", n_out)
    scale = n_in / n_out
    starts = np.arange(n_out)[:, None] * scale          # (n_out, 1)
    pixel = np.arange(n_in)[None, :]                     # (1, n_in)
    overlap = np.minimum(starts + scale, pixel + 1) - np.maximum(starts, pixel)
    return (np.clip(overlap, 0.0, None) / scale).astype(np.float32)


def resize_area(image: np.ndarray, size: tuple[int, int] = (84, 84)) -> np.ndarray:
    """(H, W) float image -> (h, w) by area averaging: R_h @ image @ R_w^T."""
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {image.shape}")
    rows = area_resize_matrix(image.shape[0], size[0])
    cols = area_resize_matrix(image.shape[1], size[1])
    return rows @ image.astype(np.float32) @ cols.T


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Round to the nearest integer and store as uint8 (4x less memory than float32)."""
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def preprocess_frame(frame: np.ndarray, size: tuple[int, int] = (84, 84)) -> np.ndarray:
    """One Atari screen (210, 160, 3) RGB uint8 -> (84, 84) grey uint8.

    y = 0.299 R + 0.587 G + 0.114 B, resized by area averaging, rounded to uint8.
    """
    return to_uint8(resize_area(to_grey(frame), size))


# ---------------------------------------------------------------------------------------
# The wrapper: noop reset, frame skip with max-pooling, grey scale, resize.

class AtariPreprocess(gym.Wrapper):
    """gymnasium's AtariPreprocessing without OpenCV: observations are (84, 84) uint8.

    The wrapped env must be an ALE env made with ``frameskip=1`` (this wrapper skips).
    ``terminal_on_life_loss`` ends the episode when a life is lost (a training trick of
    the DQN papers; evaluate on full games). Reward is the sum over the skipped frames.
    """

    def __init__(self, env: gym.Env, noop_max: int = 30, frame_skip: int = 4,
                 screen_size: int = 84, terminal_on_life_loss: bool = False):
        super().__init__(env)
        check_positive_int("frame_skip", frame_skip)
        check_positive_int("screen_size", screen_size)
        if isinstance(noop_max, bool) or not isinstance(noop_max, int) or noop_max < 0:
            raise ValueError(f"noop_max must be a non-negative integer, got {noop_max!r}")
        if getattr(env.unwrapped, "ale", None) is None:
            raise TypeError(f"env must be an ALE Atari env (gym.make('ALE/Pong-v5', "
                            f"frameskip=1)), got {env}")
        if frame_skip > 1 and getattr(env.unwrapped, "_frameskip", None) != 1:
            raise ValueError(f"env must be made with frameskip=1 (this wrapper skips "
                             f"frame_skip={frame_skip} frames), got frameskip="
                             f"{getattr(env.unwrapped, '_frameskip', None)!r}")
        self.noop_max = noop_max
        self.frame_skip = frame_skip
        self.size = (screen_size, screen_size)
        self.terminal_on_life_loss = terminal_on_life_loss
        height, width = env.unwrapped.ale.getScreenDims()
        self._screens = np.zeros((2, height, width, 3), dtype=np.uint8)  # last two frames
        # The same maths as preprocess_frame, in torch: numpy's threaded BLAS is up to 20x
        # slower on these small products when the cores are busy (measured on 2 cores).
        self._screens_t = torch.from_numpy(self._screens)             # shares the memory
        self._weights = torch.from_numpy(GREY_WEIGHTS)
        self._rows = torch.from_numpy(area_resize_matrix(height, screen_size))
        self._cols = torch.from_numpy(area_resize_matrix(width, screen_size).T.copy())
        self.lives = 0
        self.observation_space = spaces.Box(0, 255, self.size, dtype=np.uint8)

    @property
    def ale(self):
        return self.env.unwrapped.ale

    def _observation(self) -> np.ndarray:
        # max over the last two frames: some sprites are drawn only every other frame
        grey = (self._screens_t.float() @ self._weights).amax(0)       # (210, 160)
        small = self._rows @ grey @ self._cols                          # (84, 84)
        return small.round_().clamp_(0, 255).to(torch.uint8).numpy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        _, info = self.env.reset(seed=seed, options=options)
        noops = self.env.unwrapped.np_random.integers(1, self.noop_max + 1) \
            if self.noop_max > 0 else 0
        for _ in range(noops):
            _, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                _, info = self.env.reset(options=options)
        self.lives = self.ale.lives()
        self.ale.getScreenRGB(self._screens[0])
        self._screens[1] = self._screens[0]
        return self._observation(), info

    def step(self, action):
        total_reward, terminated, truncated, info = 0.0, False, False, {}
        for t in range(self.frame_skip):
            _, reward, terminated, truncated, info = self.env.step(action)
            total_reward += float(reward)
            if self.terminal_on_life_loss:
                lives = self.ale.lives()
                terminated = terminated or lives < self.lives
                self.lives = lives
            # keep the screens of the last two frames played (also when the episode ends)
            if t >= self.frame_skip - 2 or terminated or truncated:
                self._screens[0] = self._screens[1]
                self.ale.getScreenRGB(self._screens[1])
            if terminated or truncated:
                break
        return self._observation(), total_reward, terminated, truncated, info


class ClipReward(gym.RewardWrapper):
    """r -> sign(r): one scale of reward for every game (training only)."""

    def reward(self, reward):
        return float(np.sign(reward))


def make_atari(env_id: str = "ALE/Pong-v5", *, noop_max: int = 30, frame_skip: int = 4,
               screen_size: int = 84, frame_stack: int = 4,
               terminal_on_life_loss: bool = False, clip_reward: bool = True,
               repeat_action_probability: float = 0.0,
               max_episode_steps: int | None = None, render_mode: str | None = None,
               ) -> gym.Env:
    """One preprocessed Atari env: observations (frame_stack, 84, 84) uint8, oldest first.

    ``repeat_action_probability`` 0.0 is the PPO paper's deterministic setting (v5's
    default is 0.25 "sticky actions"). ``info["episode"]`` (RecordEpisodeStatistics)
    holds the raw, unclipped game score.
    """
    import ale_py  # the import registers nothing by itself in gymnasium >= 1.0

    gym.register_envs(ale_py)
    check_positive_int("frame_stack", frame_stack)
    env = gym.make(env_id, frameskip=1, repeat_action_probability=repeat_action_probability,
                   max_episode_steps=max_episode_steps, render_mode=render_mode)
    env = gym.wrappers.RecordEpisodeStatistics(env)
    env = AtariPreprocess(env, noop_max=noop_max, frame_skip=frame_skip,
                          screen_size=screen_size, terminal_on_life_loss=terminal_on_life_loss)
    if clip_reward:
        env = ClipReward(env)
    return gym.wrappers.FrameStackObservation(env, frame_stack)


def make_atari_env(env_id: str = "ALE/Pong-v5", n_envs: int = 8, seed: int | None = None,
                   frame_stack: int = 4, **kwargs: Any) -> list[Callable[[], gym.Env]]:
    """``n_envs`` factories of ``make_atari(env_id, frame_stack=..., **kwargs)``, as PPO's
    ``env`` argument: ``PPO(NatureCNNActorCritic, make_atari_env(n_envs=8), seed=0)``.

    With ``seed``, env i is reset once with seed + i when built (PPO(seed=...) reseeds the
    same way), so an env built outside PPO is reproducible too.
    """
    check_positive_int("n_envs", n_envs)
    return [_AtariFactory(env_id, seed if seed is None else seed + i, frame_stack, kwargs)
            for i in range(n_envs)]


class _AtariFactory:
    """A picklable zero-argument env factory (a lambda would not pickle for subprocesses)."""

    def __init__(self, env_id: str, seed: int | None, frame_stack: int, kwargs: dict):
        self.env_id, self.seed, self.frame_stack, self.kwargs = env_id, seed, frame_stack, kwargs

    def __call__(self) -> gym.Env:
        env = make_atari(self.env_id, frame_stack=self.frame_stack, **self.kwargs)
        if self.seed is not None:
            env.reset(seed=self.seed)
            env.action_space.seed(self.seed)
        return env

    def __repr__(self) -> str:
        return f"make_atari({self.env_id!r}, seed={self.seed}, frame_stack={self.frame_stack})"


# ---------------------------------------------------------------------------------------
# The Nature CNN actor-critic (SB3's CnnPolicy).

def conv_output_size(size: int, kernel_size: int, stride: int, padding: int = 0) -> int:
    """Side of a convolution's output: floor((size - kernel_size + 2 padding) / stride) + 1.

    Raises ValueError when the kernel does not fit in the padded input (as torch's Conv2d
    does), rather than return 0 or a negative side (which ``cnn_output_size`` would then
    multiply into a positive, meaningless count)."""
    if size + 2 * padding < kernel_size:
        raise ValueError(f"a kernel of {kernel_size} does not fit in a side of {size} with "
                         f"padding {padding}; expected size + 2 * padding >= kernel_size")
    return (size - kernel_size + 2 * padding) // stride + 1


NATURE_CONVS = ((8, 4), (4, 2), (3, 1))  # (kernel_size, stride) of the three convolutions


def cnn_output_size(height: int, width: int) -> int:
    """Features the Nature CNN's convolutions give for one (C, height, width) observation,
    flattened: 64 channels x h3 x w3, each side passed through ``conv_output_size`` for
    8x8 /4, 4x4 /2 and 3x3 /1 (no padding). 84 x 84 -> 20 -> 9 -> 7: 64 * 7 * 7 = 3136."""
    for kernel_size, stride in NATURE_CONVS:
        height = conv_output_size(height, kernel_size, stride)
        width = conv_output_size(width, kernel_size, stride)
    return 64 * height * width


def layer_init(layer: nn.Module, gain: float) -> nn.Module:
    """Orthogonal weights with ``gain``, zero bias (SB3's ortho_init)."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class NatureCNNActorCritic(CategoricalPolicy):
    """Mnih et al. (2015)'s network as actor-critic, the same as SB3's CnnPolicy.

    obs (B, 4, 84, 84) uint8 -> / 255 -> conv 32 8x8 /4 -> ReLU -> conv 64 4x4 /2 -> ReLU
    -> conv 64 3x3 /1 -> ReLU -> flatten (64 x 7 x 7 = 3136) -> linear 512 -> ReLU
    -> features; logits = action_net(features) (B, n_actions), values = value_net(features).

    Orthogonal init as SB3: gain sqrt(2) in the trunk, 0.01 for the policy head (a near
    uniform first policy), 1 for the value head. The trunk is shared by actor and critic.
    The categorical policy (``forward``, ``get_distribution``, ``heads``) is
    ``ppo_lib.policies.CategoricalPolicy``'s.
    """

    def __init__(self, observation_space: spaces.Box, action_space: spaces.Discrete,
                 features_dim: int = 512, normalize_images: bool = True,
                 ortho_init: bool = True):
        super().__init__()
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 3:
            raise ValueError(f"observation_space must be a Box of stacked frames (C, H, W), "
                             f"e.g. (4, 84, 84), got {observation_space}")
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"action_space must be Discrete (Atari actions), got {action_space}")
        check_positive_int("features_dim", features_dim)
        channels, height, width = observation_space.shape
        if min(height, width) < 36:
            raise ValueError(f"observation_space {observation_space.shape} is too small for "
                             f"the Nature CNN: height and width need at least 36 pixels")
        self.normalize_images = normalize_images
        self.features_extractor = nn.Sequential(
            nn.Conv2d(channels, 32, kernel_size=8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )
        n_flat = cnn_output_size(height, width)         # 64 x 7 x 7 = 3136 for 84 x 84
        self.n_flatten = n_flat
        self.linear = nn.Sequential(nn.Linear(n_flat, features_dim), nn.ReLU())
        self.action_net = nn.Linear(features_dim, int(action_space.n))
        self.value_net = nn.Linear(features_dim, 1)
        if ortho_init:
            for module in [*self.features_extractor, *self.linear]:
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    layer_init(module, np.sqrt(2))
            layer_init(self.action_net, 0.01)
            layer_init(self.value_net, 1.0)

    def extract_features(self, obs: Tensor) -> Tensor:
        """(B, C, H, W) frames (uint8 or float 0..255) -> (B, features_dim)."""
        x = obs.float()
        if self.normalize_images:
            x = x / 255.0
        return self.linear(self.features_extractor(x))

    def latents(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """-> the features, for both heads (the trunk is shared)."""
        features = self.extract_features(obs)
        return features, features

    def evaluate_actions(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """-> values (B,), log_probs (B,), entropy (B,) of the given actions. (Log-prob and
        entropy each from its own log-softmax, as this network always computed them:
        ``categorical_log_prob_entropy`` rounds the last bit differently.)"""
        logits, values = self.heads(obs)
        actions = actions.long().reshape(-1)
        return values, categorical_log_prob(logits, actions), categorical_entropy(logits)
