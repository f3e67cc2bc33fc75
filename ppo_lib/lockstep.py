"""Seeds in lockstep: K seeds of one PPO configuration trained together (lessons 07, 08, 10).

A sweep compares a configuration over several seeds. Trained one after another, each seed
pays Python's and torch's per-operation overhead on tiny CartPole tensors. Here the K seeds
share one batched network: every parameter gets a seed axis in front (a weight (K, out, in),
``torch.baddbmm`` / ``torch.bmm`` instead of ``addmm`` / ``mm``), and one operation does the
work of K. Yet each seed gets *exactly* what it would get alone:

    train_seeds(config, env_id, seeds, N)[k]  ==  PPO("MlpPolicy", env_id, seed=seeds[k],
                                                       **config).learn(N)

bit for bit: logger rows (but for time/*), policy and optimizer state, env state. That takes
care, because the low bits of a float32 result can depend on how an operation is batched:

* the random streams: each seed draws from its own ``torch.Generator`` started at the global
  state ``PPO(seed=s)`` leaves (python, numpy and torch seeded, the policy initialised), in
  the same order and sizes as the lone run (actions while collecting, ``randperm`` for the
  minibatches);
* matrix products: ``baddbmm`` / ``bmm`` give each seed's slice the bits of ``addmm`` / ``mm``
  for this MLP's shapes, except a layer with one output (the value head, Pendulum's action
  head), whose forward runs per seed with ``addmm``, and products of fewer than 400
  multiply-adds (torch's bmm has a loop of its own for those). An operand whose seed
  slices would not start at 64-byte boundaries (the CPU kernels round by address, see
  ``ppo_lib.fastpath``; Pendulum's (4, 3) observations) is first copied into a layout
  whose slices do (``_seed_aligned``);
* elementwise exp / log: torch computes the first multiple of 2 x 16 elements of a tensor
  with vector instructions and the rest one by one. A batched exp gives the lone run's
  bits when each seed's slice is a whole number of vector steps; otherwise ``_rowwise``
  lays the slices out one element apart, and torch then loops row by row, each row split
  as the lone tensor is (the rollout's few logits per seed, a minibatch of 25);
* reductions whose algorithm depends on the shape: ``Tensor.std()`` over a whole tensor (a
  two-pass double-precision algorithm) differs from ``std(dim)`` (Welford), so the
  per-minibatch advantage normalisation writes the former out (``_normalized``); the
  gradient norm is ``vector_norm`` of each seed's flat buffer (``_foreach_norm``). Sums
  and means over the batch axis, and log_softmax over the last, are batched: a row of a
  (K, B) reduction is reduced as the lone (B,) tensor is (tests/test_lockstep.py trains
  both and compares);
* threads: each seed equals its lone run *on one torch thread* (as lessons 07 / 08 and
  ``run_grid`` train), and ``train_seeds`` runs on one thread (restored after). A lone
  run's own last bits depend on the thread count (HEALTHY's and Pendulum's weights differ
  between 1 and 2 threads: torch splits the matrix products), and a K-times larger batched
  operation would be split where the lone one is not.

``supports_lockstep(config, env_id)`` says whether a configuration can run so; anything else
(target_kl, kl_penalty, loss_fn, advantage_fn, CnnPolicy, other action spaces) trains its
seeds one after another with ``PPO`` (same results, no speed-up).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import fields
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .distributions import LOG_SQRT_2PI, gaussian_entropy
from .fastpath import ACTIVATIONS, fast_gradient_step
from .logger import rollout_row, train_row
from .policies import CategoricalActorCritic, GaussianActorCritic, clip_actions
from .returns import gae
from .rollout import Rollout, check_finite, obs_tensor
from .validation import check_finite_parameters, check_positive_int

ALIGN = 16        # floats: 64 bytes, the boundary each seed's operands start at
BMM_SMALL = 400   # multiply-adds below which torch's bmm runs a loop of its own, which
#                   rounds unlike addmm (a (3, 64) x (64, 2) head): those run per seed
VECTOR_RUN = 32   # elements torch's elementwise kernels take per vector step (2 x 16 floats)

# Configuration keys lockstep trains exactly (others, e.g. target_kl, fall back to PPO)
SUPPORTED_KEYS = {
    "n_envs", "learning_rate", "n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda",
    "clip_range", "clip_range_vf", "normalize_advantage", "ent_coef", "vf_coef",
    "max_grad_norm", "normalize_obs", "normalize_reward", "policy_kwargs",
    "vectorization_mode", "target_kl", "kl_penalty", "loss_fn", "advantage_fn", "verbose",
    "tensorboard_log", "kl_penalty_target"}
SUPPORTED_POLICY_KWARGS = {"net_arch", "activation_fn", "ortho_init", "optimizer_kwargs",
                           "log_std_init"}


# --- which configurations ------------------------------------------------------------------
def lockstep_problem(config: Mapping[str, Any], env_id: Any = "CartPole-v1",
                     policy: Any = "MlpPolicy") -> str | None:
    """Why ``config`` cannot train in lockstep (a sentence), or None when it can."""
    if policy != "MlpPolicy":
        return f"policy={policy!r}: lockstep batches the MLP policies only ('MlpPolicy')"
    if not isinstance(env_id, str):
        return f"env={env_id!r}: lockstep builds its envs from an env id string"
    unknown = sorted(set(config) - SUPPORTED_KEYS)
    if unknown:
        return f"config keys {unknown} are not batched by lockstep"
    for key in ("target_kl", "kl_penalty", "loss_fn", "advantage_fn", "tensorboard_log"):
        if config.get(key) is not None:
            return f"{key}={config[key]!r}: lockstep runs the plain clipped loss only"
    if config.get("verbose", 0):
        return f"verbose={config['verbose']!r}: lockstep prints nothing"
    kwargs = dict(config.get("policy_kwargs") or {})
    unknown = sorted(set(kwargs) - SUPPORTED_POLICY_KWARGS)
    if unknown:
        return f"policy_kwargs keys {unknown} are not batched by lockstep"
    activation = kwargs.get("activation_fn", nn.Tanh)
    if activation not in (nn.Tanh, nn.ReLU):
        return f"activation_fn={activation!r}: lockstep batches Tanh and ReLU"
    optimizer = dict(kwargs.get("optimizer_kwargs") or {})
    if set(optimizer) - {"eps", "betas"}:
        return f"optimizer_kwargs={optimizer!r}: lockstep batches Adam's eps and betas only"
    import gymnasium as gym
    from gymnasium import spaces

    try:
        env = gym.make(env_id)
    except Exception as error:  # noqa: BLE001 - PPO itself will say what is wrong
        return f"env_id={env_id!r} cannot be made here ({type(error).__name__})"
    action_space = env.action_space
    env.close()
    if not isinstance(action_space, (spaces.Discrete, spaces.Box)):
        return f"action space {action_space}: lockstep batches Discrete and Box actions"
    return None


def supports_lockstep(config: Mapping[str, Any], env_id: Any = "CartPole-v1",
                      policy: Any = "MlpPolicy") -> bool:
    """Whether ``train_seeds`` trains ``config``'s seeds in lockstep (else one after another;
    ``lockstep_problem`` says why)."""
    return lockstep_problem(config, env_id, policy) is None


def check_seeds(seeds: Any) -> list[int]:
    """``seeds`` as a list of distinct ints, else ValueError naming the value."""
    try:
        seeds = list(seeds)
    except TypeError:
        raise ValueError(f"seeds must be a list of distinct integers, got {seeds!r}") from None
    if not seeds:
        raise ValueError("seeds is empty; expected at least one integer seed, e.g. [0, 1, 2]")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seeds must be integers, got {seed!r} "
                             f"({type(seed).__name__}) in seeds={seeds!r}")
    seeds = [int(seed) for seed in seeds]
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise ValueError(f"seeds={seeds!r} repeats {repeated}: each seed once (a repeated "
                         f"seed is the same run)")
    return seeds


# --- the public entry point ----------------------------------------------------------------
def train_seeds(config: Mapping[str, Any], env_id: str, seeds: Sequence[int],
                total_timesteps: int, policy: str = "MlpPolicy", progress_bar: bool = False,
                lockstep: bool = True) -> list:
    """Train ``PPO(policy, env_id, seed=s, **config).learn(total_timesteps)`` for every seed s
    -> the K trained ``PPO`` models, in the order of ``seeds``, each exactly the lone run's
    on one torch thread (policy, optimizer, logger rows but for time/*, env, normaliser,
    num_timesteps).

    The lone run leaves torch's global random state behind, and a model goes on from it
    when trained further (``learn(..., reset_num_timesteps=False)``); K models cannot share
    one, so each gets it as ``model.lockstep_rng_state``: ``torch.set_rng_state(it)`` before
    training a model further continues it exactly as the lone run (None: the model was
    trained alone, the global state is its own).

    In lockstep (one batched network for the K seeds) when ``lockstep`` and
    ``supports_lockstep(config, env_id)``; otherwise one after another.
    """
    from .ppo import PPO

    seeds = check_seeds(seeds)
    check_positive_int("total_timesteps", total_timesteps)
    if not lockstep or lockstep_problem(config, env_id, policy) is not None:
        return [_lone(PPO(policy, env_id, seed=seed, **config), total_timesteps, progress_bar)
                for seed in seeds]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the lone run on one thread is what each seed reproduces
    try:
        models, generators = [], []
        for seed in seeds:
            models.append(PPO(policy, env_id, seed=seed, **config))
            generator = torch.Generator()  # the global state this seed's lone run goes on from
            generator.set_state(torch.get_rng_state())
            generators.append(generator)
        if any(type(m.policy) not in (CategoricalActorCritic, GaussianActorCritic)
               or fast_gradient_step(m.policy, m.optimizer) is None for m in models):
            # not the written-out step's MLP: each seed alone, made again (the global
            # random state is the last model's now)
            return [_lone(PPO(policy, env_id, seed=seed, **config), total_timesteps,
                          progress_bar) for seed in seeds]
        Lockstep(models, generators).learn(total_timesteps, progress_bar)
        for model, generator in zip(models, generators):
            model.lockstep_rng_state = generator.get_state()
    finally:
        torch.set_num_threads(threads)
    return models


def _lone(model, total_timesteps: int, progress_bar: bool):
    """A model trained alone (global random state): ``lockstep_rng_state`` None."""
    model.learn(total_timesteps, progress_bar=progress_bar)
    model.lockstep_rng_state = None
    return model


# --- the K seeds' parameters in one buffer ---------------------------------------------------
def _aligned_zeros(*shape: int) -> Tensor:
    """Zeros of ``shape`` whose storage starts at a 64-byte boundary."""
    return _aligned_empty(*shape).zero_()


def _aligned_empty(*shape: int) -> Tensor:
    """An uninitialised tensor of ``shape`` starting at a 64-byte boundary."""
    numel = int(np.prod(shape))
    raw = torch.empty(numel + ALIGN)
    shift = (-raw.data_ptr() % (4 * ALIGN)) // 4
    return raw[shift:shift + numel].view(*shape)


def _aligned(x: Tensor) -> bool:
    return x.data_ptr() % (4 * ALIGN) == 0


def _rowwise(fn, x: Tensor) -> Tensor:
    """``fn`` (an elementwise exp or log) of x (K, ...) with each seed's slice computed as
    the lone run computes it alone: torch takes the first multiple of VECTOR_RUN elements of
    a contiguous tensor in vector steps and the rest one by one, so a batched call is exact
    when each slice is a whole number of vector steps; otherwise the slices go into rows
    one element apart, which torch's loops cannot merge: it runs row by row, each row
    split as the lone tensor is."""
    K = x.shape[0]
    flat = x.reshape(K, -1)
    if flat.is_contiguous() and flat.shape[1] % VECTOR_RUN == 0:
        return fn(x)
    apart = torch.empty(K, flat.shape[1] + 1)[:, :flat.shape[1]]
    apart.copy_(flat)
    return fn(apart).reshape(x.shape)


def _logsumexp(x: Tensor) -> Tensor:
    """``torch.logsumexp(x, -1)`` as torch's CPU kernel computes it (max, exp of the
    difference, sum, log, add the max back), its exp and log seed by seed (``_rowwise``)."""
    maxes = torch.amax(x, -1, keepdim=True)
    maxes = maxes.masked_fill(maxes.abs() == float("inf"), 0)
    total = _rowwise(torch.exp, x - maxes).sum(-1)
    return _rowwise(torch.log, total) + maxes.squeeze(-1)


class Layer:
    """One Linear (+ activation) of the K seeds: weight (K, out, in) and bias (K, out), and
    their gradients, as views of the flat (K, total) buffers."""

    def __init__(self, linears: list[nn.Linear], activation, offsets, flat, grad):
        self.linears = linears
        self.act, self.act_backward = activation
        self.out_features, self.in_features = linears[0].weight.shape
        w_off, b_off = offsets
        out, inp = self.out_features, self.in_features
        self.weight = flat[:, w_off:w_off + out * inp].view(-1, out, inp)
        self.bias = flat[:, b_off:b_off + out]
        self.weight_grad = grad[:, w_off:w_off + out * inp].view(-1, out, inp)
        self.bias_grad = grad[:, b_off:b_off + out]
        # baddbmm rounds a one-output layer's forward unlike addmm (a dot product per row):
        # that runs per seed; its backward, d^T x and an outer product d W, is batched
        self.per_seed = out == 1

    def forward(self, x: Tensor) -> Tensor:
        """y = act(x W^T + b) for each seed: x (K, B, in) -> (K, B, out)."""
        if self.per_seed or x.shape[1] * self.in_features * self.out_features < BMM_SMALL:
            y = torch.stack([torch.addmm(lin.bias, _aligned_copy(x[k]), lin.weight.t())
                             for k, lin in enumerate(self.linears)])
        else:
            y = torch.baddbmm(self.bias.unsqueeze(1), _seed_aligned(x),
                              self.weight.transpose(1, 2))
        return y if self.act is None else self.act(y)

    def backward(self, x: Tensor, y: Tensor, grad: Tensor, input_grad: bool) -> Tensor | None:
        """From dL/dy (K, B, out): .grad of W and b (in place), and dL/dx if ``input_grad``.

            d = dL/dy * act'(.),   dL/dW = d^T x,   dL/db = sum_batch d,   dL/dx = d W
        """
        if self.act_backward is not None:
            grad = self.act_backward(grad, y)
        if x.shape[1] * self.in_features * self.out_features < BMM_SMALL:
            for k, lin in enumerate(self.linears):
                torch.mm(_aligned_copy(grad[k]).t(), _aligned_copy(x[k]), out=lin.weight.grad)
            dx = torch.stack([_aligned_copy(grad[k]).mm(lin.weight)
                              for k, lin in enumerate(self.linears)]) if input_grad else None
        else:
            grad_aligned = _seed_aligned(grad)
            torch.bmm(grad_aligned.transpose(1, 2), _seed_aligned(x), out=self.weight_grad)
            dx = torch.bmm(grad_aligned, self.weight) if input_grad else None
        torch.sum(grad, 1, out=self.bias_grad)
        return dx


def _seed_aligned(x: Tensor) -> Tensor:
    """x (K, ...) laid out for ``bmm``: itself when every seed's slice is contiguous from a
    64-byte boundary, else a copy whose slices are (each padded to a multiple of 16
    floats). ``bmm`` / ``baddbmm`` then give each seed the bits of ``mm`` / ``addmm`` on
    the lone run's freshly allocated (aligned) tensors: the CPU kernels round by address."""
    per_seed = x[0].numel()
    if _aligned(x) and x.is_contiguous() and per_seed % ALIGN == 0:
        return x
    stride = -(-per_seed // ALIGN) * ALIGN
    out = _aligned_empty(x.shape[0], stride)[:, :per_seed].view(x.shape)
    out.copy_(x)
    return out


def _aligned_copy(x: Tensor) -> Tensor:
    """x itself if it is contiguous from a 64-byte boundary, else such a copy (as the lone
    run's freshly allocated tensors are)."""
    if _aligned(x) and x.is_contiguous():
        return x
    return x.clone(memory_format=torch.contiguous_format)


def _net(modules_per_seed: list[list[nn.Module]], index: dict, flat, grad) -> list[Layer]:
    """The K seeds' copies of one mlp() (plus a head) as Layers."""
    layers = []
    first = modules_per_seed[0]
    for i, module in enumerate(first):
        if type(module) is nn.Linear:
            linears = [modules[i] for modules in modules_per_seed]
            activation = (None, None)
            if i + 1 < len(first) and type(first[i + 1]) in ACTIVATIONS:
                activation = ACTIVATIONS[type(first[i + 1])]
            offsets = (index[id(module.weight)], index[id(module.bias)])
            layers.append(Layer(linears, activation, offsets, flat, grad))
    return layers


class Lockstep:
    """K ``PPO`` models of one configuration (made by ``PPO(seed=s)``, not trained yet)
    trained together; ``generators[k]`` holds the torch random state seed k's lone run has
    at the start of ``learn``.

    The parameters, their gradients and Adam's state of all K live in (K, total) buffers, row
    k laid out as ``ppo_lib.fastpath`` lays out a lone model's (each parameter at a 64-byte
    boundary); each model's parameters, .grad and optimizer state are views of row k, so
    the models always hold their current state.
    """

    def __init__(self, models: list, generators: list[torch.Generator]):
        self.models, self.generators = models, generators
        self.K = len(models)
        first = models[0]
        self.gaussian = isinstance(first.policy, GaussianActorCritic)
        params = [list(m.policy.parameters()) for m in models]
        sizes = [p.numel() for p in params[0]]
        offsets, total = [], 0
        for size in sizes:
            offsets.append(total)
            total += -(-size // ALIGN) * ALIGN
        self.flat = _aligned_zeros(self.K, total)
        self.grad = _aligned_zeros(self.K, total)
        self.exp_avg = _aligned_zeros(self.K, total)
        self.exp_avg_sq = _aligned_zeros(self.K, total)
        self.steps = torch.zeros(self.K, len(sizes))
        with torch.no_grad():
            for k, model in enumerate(models):
                state = model.optimizer.state
                for j, p in enumerate(params[k]):
                    o = offsets[j]
                    view = self.flat[k, o:o + p.numel()].view_as(p)
                    view.copy_(p.detach())
                    p.data = view
                    p.grad = self.grad[k, o:o + p.numel()].view_as(p)
                    state[p] = {"step": self.steps[k, j],
                                "exp_avg": self.exp_avg[k, o:o + p.numel()].view_as(p),
                                "exp_avg_sq": self.exp_avg_sq[k, o:o + p.numel()].view_as(p)}
                model.optimizer._lists = None
                model._gradient_step = None
        index = {id(p): o for p, o in zip(params[0], offsets)}
        policies = [m.policy for m in models]
        ex = [p.mlp_extractor for p in policies]
        self.shared = _net([list(e.shared_net) for e in ex], index, self.flat, self.grad)
        self.pi = _net([list(e.policy_net) + [p.action_net] for e, p in zip(ex, policies)],
                       index, self.flat, self.grad)
        self.vf = _net([list(e.value_net) + [p.value_net] for e, p in zip(ex, policies)],
                       index, self.flat, self.grad)
        if self.gaussian:
            o = index[id(first.policy.log_std)]
            n = first.policy.log_std.numel()
            self.log_std, self.log_std_grad = self.flat[:, o:o + n], self.grad[:, o:o + n]
        self.envs = SeedEnvs(models)
        # one rollout buffer (K, T, N, ...) for all; model k's Rollout is row k (contiguous)
        one = Rollout.allocate(first.n_steps, first.n_envs, first.observation_space,
                               first.action_space)  # a lone run's buffers: shapes, dtypes
        buffers = [getattr(one, f.name) for f in fields(Rollout)]
        self.rollout = Rollout(*(torch.zeros(self.K, *x.shape, dtype=x.dtype) for x in buffers))
        rows = [getattr(self.rollout, f.name) for f in fields(Rollout)]
        for k, model in enumerate(models):
            model.rollout = Rollout(*(x[k] for x in rows))

    # --- forward ------------------------------------------------------------------------
    @staticmethod
    def _run(layers: list[Layer], x: Tensor, saved: list | None = None) -> Tensor:
        for layer in layers:
            y = layer.forward(x)
            if saved is not None:
                saved.append((x, y))
            x = y
        return x

    def heads(self, obs: Tensor, saved=None) -> tuple[Tensor, Tensor]:
        """obs (K, B, obs_dim) -> logits or mean (K, B, A), values (K, B)."""
        saved_shared, saved_pi, saved_vf = saved or (None, None, None)
        trunk = self._run(self.shared, obs, saved_shared)
        head = self._run(self.pi, trunk, saved_pi)
        values = self._run(self.vf, trunk, saved_vf).squeeze(-1)
        return head, values

    # --- training loop ------------------------------------------------------------------
    def learn(self, total_timesteps: int, progress_bar: bool = False) -> None:
        """``PPO.learn(total_timesteps)`` for every model (fresh: num_timesteps from 0)."""
        from .callbacks import as_callback

        models = self.models
        for model, obs in zip(models, self.envs.reset()):
            model.num_timesteps, model.n_updates = 0, 0
            if model.normalizer is not None:  # as PPO.reset_env
                model.normalizer.returns[:] = 0.0
                obs = model.normalizer.obs(obs, update=True)
            model.last_obs = obs
            model._callback = as_callback(None)
            model._callback.init_callback(model)
        bar = None
        if progress_bar:
            from tqdm.auto import tqdm
            bar = tqdm(total=total_timesteps * self.K, unit="steps")
        start_time = time.perf_counter()
        try:
            while models[0].num_timesteps < total_timesteps:
                self.collect(bar)
                for model in models:
                    check_finite(model.rollout, model.num_timesteps, model.lr_schedule(1.0))
                self.compute_advantages()
                progress = max(0.0, 1.0 - models[0].num_timesteps / total_timesteps)
                rows = self.train(progress)
                elapsed = max(time.perf_counter() - start_time, 1e-9)
                for k, (model, row) in enumerate(zip(models, rows)):
                    steps = model.num_timesteps
                    model.logger.record({**self.envs.rollout_row(k),
                                         "time/fps": int(steps / elapsed),
                                         "time/iterations": len(model.logger.rows) + 1,
                                         "time/time_elapsed": elapsed,
                                         "time/total_timesteps": steps, **row})
        finally:
            if bar is not None:
                bar.close()
            self.envs.hand_back()

    def compute_advantages(self) -> None:
        """GAE for all seeds in one call: ``returns.gae`` on the (T, K x N) rollout, each
        env a column (its arithmetic is elementwise: the same numbers as per seed)."""
        r, first = self.rollout, self.models[0]
        K, T, N = r.rewards.shape
        advantages, returns = gae(_columns(r.rewards), _columns(r.values), _columns(r.dones),
                                  r.last_values.reshape(K * N), first.gamma,
                                  first.gae_lambda)
        r.advantages.copy_(advantages.view(T, K, N).transpose(0, 1))
        r.returns.copy_(returns.view(T, K, N).transpose(0, 1))

    def collect(self, bar=None) -> None:
        """``collect_rollout`` for the K models: one batched forward pass per step, each
        model's env, normaliser and random stream its own."""
        models, K = self.models, self.K
        rollout = self.rollout
        with torch.no_grad():
            for t in range(rollout.obs.shape[1]):
                obs = torch.stack([obs_tensor(m.last_obs) for m in models])
                head, values = self.heads(obs)
                actions, log_probs = self.sample(head)
                for k, (model, result) in enumerate(zip(models, self.envs.step(actions))):
                    model.last_obs, rewards, dones = _after_env_step(model, *result)
                    rollout.rewards[k, t] = rewards
                    rollout.dones[k, t] = dones
                    model.num_timesteps += model.n_envs
                rollout.obs[:, t] = obs
                rollout.actions[:, t] = actions
                rollout.values[:, t] = values
                rollout.log_probs[:, t] = log_probs
                if bar is not None:
                    bar.update(K * models[0].n_envs)
            last = torch.stack([obs_tensor(m.last_obs) for m in models])
            rollout.last_values[:] = self.heads(last)[1]

    def sample(self, head: Tensor) -> tuple[Tensor, Tensor]:
        """Each seed's actions (K, N, ...) and their log-probabilities (K, N), each seed's
        noise drawn from its own generator in the shape ``policy.forward`` draws it
        (``categorical_sample`` / ``GaussianActorCritic.forward``), exp / log seed by seed
        (``_rowwise``)."""
        noise = torch.empty(head.shape)
        draw = torch.randn if self.gaussian else torch.rand
        for k, generator in enumerate(self.generators):
            draw(head.shape[1:], generator=generator, out=noise[k])
        if self.gaussian:  # a = mu + sigma * N(0, 1); log pi(a|s) as gaussian_log_prob
            mean, log_std = head, self.log_std.unsqueeze(1)
            actions = mean + _rowwise(torch.exp, log_std) * noise
            log_stds = log_std.expand_as(mean)
            z = (actions - mean) * _rowwise(torch.exp, -log_stds)
            return actions, (-0.5 * z * z - log_stds - LOG_SQRT_2PI).sum(-1)
        # Gumbel-max: argmax(z + Gumbel noise); log pi(a|s) = z_a - logsumexp(z)
        u = noise.clamp_(min=1e-20)
        actions = (head - _rowwise(torch.log, -_rowwise(torch.log, u))).argmax(-1)
        log_pi = head - _logsumexp(head).unsqueeze(-1)
        return actions, log_pi.gather(-1, actions.unsqueeze(-1)).squeeze(-1)

    # --- the update ---------------------------------------------------------------------
    @torch.no_grad()  # as MlpGradientStep: no graph (and fastpath.tanh is numpy's then)
    def train(self, progress_remaining: float) -> list[dict[str, float]]:
        """``PPO.train`` (the fast path) for the K models -> their logged rows."""
        models, K = self.models, self.K
        first = models[0]
        learning_rate, clip_range, clip_range_vf = first._scheduled(progress_remaining)
        for model in models:
            model._scheduled(progress_remaining)
            for group in model.optimizer.param_groups:
                group["lr"] = learning_rate
        clip_range = max(clip_range, 1e-8)
        group = first.optimizer.param_groups[0]
        rollout = self.rollout
        n = rollout.rewards[0].numel()
        flat = [rollout.obs.flatten(1, 2), rollout.actions.flatten(1, 2),
                rollout.values.flatten(1), rollout.log_probs.flatten(1),
                rollout.advantages.flatten(1), rollout.returns.flatten(1)]
        seed_index = torch.arange(K).unsqueeze(1)
        logged, kls = [], []
        for epoch in range(first.n_epochs):
            kls = []
            if first.batch_size >= n:
                batches = [flat]
            else:  # each seed's shuffle from its own generator, as rollout.minibatches
                orders = torch.stack([torch.randperm(n, generator=g) for g in self.generators])
                batches = [[x[seed_index, orders[:, s:s + first.batch_size]] for x in flat]
                           for s in range(0, n, first.batch_size)]
            for obs, actions, old_values, old_log_probs, advantages, returns in batches:
                if first.normalize_advantage and advantages.shape[1] > 1:
                    advantages = _normalized(advantages)
                saved = ([], [], [])
                head, values = self.heads(obs.float(), saved)
                args = (old_log_probs, advantages, returns, float(clip_range),
                        float(first.vf_coef), float(first.ent_coef), old_values,
                        None if clip_range_vf is None else float(clip_range_vf))
                if self.gaussian:
                    (total, policy, value, entropy, log_ratio, ratio, grad_head,
                     grad_log_std, grad_values) = self._gaussian(head, values, actions, *args)
                else:
                    (total, policy, value, entropy, log_ratio, ratio, grad_head,
                     grad_values) = self._categorical(head, values, actions.long(), *args)
                    grad_log_std = None
                clipped = (torch.abs(ratio - 1) > clip_range).float().mean(-1)
                logged.append(torch.stack([policy, value, -entropy, clipped], 1))
                if epoch == first.n_epochs - 1:  # approx_kl, as ppo_lib.kl
                    kls.append(_approx_kl(log_ratio))
                self.step(saved, grad_head, grad_log_std, grad_values, first.max_grad_norm,
                          group)
            for model in models:
                model.n_updates += 1
        rows = []
        last_losses = total.tolist()
        for k, model in enumerate(models):
            check_finite_parameters(model.policy, last_losses[k], model.n_updates,
                                    model.num_timesteps, learning_rate)
            rows.append(train_row([x[k] for x in logged], [x[k] for x in kls],
                                  last_losses[k], model.rollout, model.policy,
                                  model.n_updates, learning_rate, clip_range, clip_range_vf))
        return rows

    def _gaussian(self, mean, values, actions, old_log_probs, advantages, returns, clip_range,
                  vf_coef, ent_coef, old_values, clip_range_vf):
        """``gradients.gaussian_loss_and_gradients`` for K seeds (op for op)."""
        n = values.shape[1]
        log_stds = self.log_std.unsqueeze(1).expand_as(mean)
        inv_std = _rowwise(torch.exp, -log_stds)
        z = (actions - mean) * inv_std
        log_prob = (-0.5 * z * z - log_stds - LOG_SQRT_2PI).sum(-1)
        log_ratio = log_prob - old_log_probs
        policy, value, ratio, g, grad_values = self._clipped_and_value(
            log_ratio, advantages, values, returns, clip_range, vf_coef, old_values,
            clip_range_vf)
        mean_entropy = torch.stack([gaussian_entropy(self.log_std[k]).expand(n).mean()
                                    for k in range(self.K)])
        total = policy + vf_coef * value
        if ent_coef != 0:
            total = total - ent_coef * mean_entropy
        g = g.unsqueeze(-1)
        grad_mean = g * z * inv_std
        grad_log_std = (g * (z * z - 1)).sum(1)
        if ent_coef != 0:
            grad_log_std = grad_log_std - ent_coef
        return (total, policy, value, mean_entropy, log_ratio, ratio, grad_mean, grad_log_std,
                grad_values)

    def _categorical(self, logits, values, actions, old_log_probs, advantages, returns,
                     clip_range, vf_coef, ent_coef, old_values, clip_range_vf):
        """``gradients.categorical_loss_and_gradients`` for K seeds (op for op)."""
        n = values.shape[1]
        log_pi = torch.log_softmax(logits, dim=-1)  # row by row: batched is exact
        p = _rowwise(torch.exp, log_pi)
        entropy = -(p * log_pi).sum(-1)
        index = actions.unsqueeze(-1)
        log_ratio = log_pi.gather(-1, index).squeeze(-1) - old_log_probs
        policy, value, ratio, g, grad_values = self._clipped_and_value(
            log_ratio, advantages, values, returns, clip_range, vf_coef, old_values,
            clip_range_vf)
        mean_entropy = entropy.mean(-1)
        total = policy + vf_coef * value
        if ent_coef != 0:
            total = total - ent_coef * mean_entropy
        g = g.unsqueeze(-1)
        if ent_coef != 0:
            grad_logits = torch.addcmul(ent_coef / n * p * (log_pi + entropy.unsqueeze(-1)),
                                        g, -p)
        else:  # the same numbers: the entropy term is exactly 0
            grad_logits = (g * p).neg_()
        grad_logits.scatter_add_(-1, index, g)
        return total, policy, value, mean_entropy, log_ratio, ratio, grad_logits, grad_values

    def _clipped_and_value(self, log_ratio, advantages, values, returns, clip_range, vf_coef,
                           old_values, clip_range_vf):
        return _clipped_and_value(log_ratio, advantages, values, returns, clip_range, vf_coef,
                                  old_values, clip_range_vf)

    def step(self, saved, grad_head, grad_log_std, grad_values, max_grad_norm, group) -> None:
        """Backward pass, gradient-norm clip and one Adam step for the K seeds
        (``fastpath.MlpGradientStep.step``)."""
        saved_shared, saved_pi, saved_vf = saved
        with torch.no_grad():
            if grad_log_std is not None:
                self.log_std_grad.copy_(grad_log_std)
            has_trunk = len(self.shared) > 0
            d_pi = _backward(self.pi, saved_pi, grad_head, has_trunk)
            d_vf = _backward(self.vf, saved_vf, grad_values.unsqueeze(-1), has_trunk)
            if has_trunk:
                _backward(self.shared, saved_shared, d_pi + d_vf, False)
            # clip_grad_norm_: scale by min(1, max_norm / (||g|| + 1e-6)), ||g|| per seed
            # (torch's foreach norm takes vector_norm of each seed's row, as the lone run
            # takes it of its flat buffer)
            norm = torch.stack(torch._foreach_norm(list(self.grad)))
            self.grad.mul_(torch.clamp(max_grad_norm / (norm + 1e-6), max=1.0).unsqueeze(1))
            self.steps.add_(1)
            beta1, beta2 = group["betas"]
            torch._fused_adam_(list(self.flat), list(self.grad), list(self.exp_avg),
                               list(self.exp_avg_sq), [], list(self.steps[:, 0]),
                               lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=0.0,
                               eps=group["eps"], amsgrad=False, maximize=False)


class SeedEnvs:
    """The K models' envs stepped together: with sync envs each model's own ``VecEnv`` (a
    Python loop over gym envs either way, nothing to batch); with the vectorised CartPole
    one ``CartPoleVecEnv`` of K x n carts, a group of n per seed seeded as the seed's own
    (one numpy step for all, each cart's physics elementwise, each group's starts from its
    own generator), whose state ``hand_back`` copies into each model's env at the end."""

    def __init__(self, models: list):
        from .vector_cartpole import CartPoleVecEnv

        self.models = models
        self.n = models[0].n_envs
        self.carts = None
        if all(type(m.env) is CartPoleVecEnv and m.env.n_groups == 1 for m in models):
            spec = models[0].env.spec
            self.carts = CartPoleVecEnv(spec.id, self.n * len(models),
                                        seed=[m.env.seed for m in models])

    def reset(self) -> list[np.ndarray]:
        """Each model's first observations (raw)."""
        if self.carts is None:
            return [m.env.reset() for m in self.models]
        obs = self.carts.reset()
        return [obs[k * self.n:(k + 1) * self.n] for k in range(len(self.models))]

    def step(self, actions: Tensor) -> list[tuple]:
        """Each model's (obs, rewards, terminated, truncated, infos) for its actions (K, N)."""
        if self.carts is None:
            return [m.env.step(clip_actions(a.numpy(), m.env.action_space))
                    for m, a in zip(self.models, actions)]
        obs, rewards, terminated, truncated, infos = self.carts.step(actions.reshape(-1).numpy())
        out = []
        for k in range(len(self.models)):
            part = slice(k * self.n, (k + 1) * self.n)
            out.append((obs[part], rewards[part], terminated[part], truncated[part],
                        {"final_obs": infos["final_obs"][part]}))
        return out

    def rollout_row(self, k: int) -> dict[str, float]:
        """SB3's rollout keys of model k's recent episodes (``logger.rollout_row``)."""
        if self.carts is None:
            return rollout_row(self.models[k].env)
        episodes = SimpleNamespace(episode_returns=self.carts.group_episode_returns[k],
                                   episode_lengths=self.carts.group_episode_lengths[k])
        return rollout_row(episodes)

    def hand_back(self) -> None:
        """Each model's env gets its group's state (carts, generator, statistics)."""
        if self.carts is None:
            return
        state = self.carts.get_state()
        for k, model in enumerate(self.models):
            part = slice(k * self.n, (k + 1) * self.n)
            carts = state["cartpole"]
            model.env.set_state({
                "last_obs": None if state["last_obs"] is None else state["last_obs"][part],
                "returns": state["returns"][part], "lengths": state["lengths"][part],
                "episode_returns": state["group_episode_returns"][k],
                "episode_lengths": state["group_episode_lengths"][k],
                "episode_count": state["group_episode_count"][k],
                "group_episode_returns": [state["group_episode_returns"][k]],
                "group_episode_lengths": [state["group_episode_lengths"][k]],
                "group_episode_count": [state["group_episode_count"][k]],
                "cartpole": None if carts is None else {
                    "state": carts["state"][:, part], "steps": carts["steps"][part],
                    "rngs": [carts["rngs"][k]]}})


def _columns(x: Tensor) -> Tensor:
    """A (K, T, N) rollout buffer as (T, K * N): every env of every seed a column."""
    K, T, N = x.shape
    return x.transpose(0, 1).reshape(T, K * N)


def _backward(layers: list[Layer], saved: list, grad: Tensor, need_input_grad: bool):
    for i in range(len(layers) - 1, -1, -1):
        x, y = saved[i]
        grad = layers[i].backward(x, y, grad, i > 0 or need_input_grad)
    return grad


def _after_env_step(model, next_obs, rewards, terminated, truncated, infos):
    """What ``collect_rollout`` does with one env step of ``model``'s envs -> (next_obs,
    rewards (N,) float32 tensor, dones (N,) float32 tensor)."""
    normalizer = model.normalizer
    dones = terminated | truncated
    if normalizer is not None:
        next_obs = normalizer.obs(next_obs, update=True)
        rewards = normalizer.reward(rewards, dones)
    timeouts = truncated & ~terminated
    if timeouts.any():  # bootstrap: the episode would have gone on
        final_obs = infos["final_obs"][timeouts]
        if normalizer is not None:
            final_obs = normalizer.obs(final_obs)
        final_values = model.policy.predict_values(obs_tensor(final_obs)).numpy()
        rewards = rewards.astype(np.float32, copy=True)
        rewards[timeouts] += model.gamma * final_values
    return (next_obs, torch.from_numpy(np.asarray(rewards, dtype=np.float32)),
            torch.from_numpy(dones.astype(np.float32)))


def _normalized(advantages: Tensor) -> Tensor:
    """``PPO.normalized_advantages`` of each seed's minibatch (K, B):

        A <- (A - mean A) / (std A + 1e-8)

    std as torch computes ``Tensor.std()`` of a whole tensor on the CPU (``std(dim)`` is
    another algorithm, Welford's, with other last bits): the float32 mean, then in float64
    the sum of squared deviations taken in order (a cumulative sum's last element),
    divided by B - 1, its square root, rounded to float32."""
    n = advantages.shape[1]
    mean = advantages.mean(-1, keepdim=True)
    deviations = advantages.double() - mean.double()
    variance = torch.cumsum(deviations * deviations, -1)[:, -1:] / (n - 1)
    std = torch.sqrt(variance).float()
    return (advantages - mean) / (std + 1e-8)


def _approx_kl(log_ratio: Tensor) -> Tensor:
    """``kl.approx_kl`` per seed: mean((r - 1) - log r) over the last axis."""
    ratio = _rowwise(torch.exp, log_ratio)
    return ((ratio - 1) - log_ratio).mean(-1)


def _clipped_and_value(log_ratio, advantages, values, returns, clip_range, vf_coef,
                       old_values, clip_range_vf):
    """``gradients.clipped_and_value_gradients`` for K seeds (op for op, means over the
    batch axis)."""
    n = values.shape[1]
    ratio = _rowwise(torch.exp, log_ratio)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - clip_range, 1 + clip_range) * advantages
    takes_unclipped = unclipped <= clipped
    policy = -torch.where(takes_unclipped, unclipped, clipped).mean(-1)
    predicted, vf_passes = values, None
    if clip_range_vf is not None:
        change = values - old_values
        predicted = old_values + change.clamp(-clip_range_vf, clip_range_vf)
        vf_passes = change.abs() <= clip_range_vf
    error = predicted - returns
    value = error.square().mean(-1)
    g = torch.where(takes_unclipped, (-1.0 / n) * advantages * ratio, 0.0)
    grad_values = (2.0 * vf_coef / n) * error
    if vf_passes is not None:
        grad_values = grad_values * vf_passes
    return policy, value, ratio, g, grad_values
