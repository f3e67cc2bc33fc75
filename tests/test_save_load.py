import os

import numpy as np
import pytest
import torch

from ppo_lib import ppo as ppo_module
from ppo_lib.callbacks import BaseCallback
from ppo_lib.ppo import PPO
from ppo_lib.schedules import linear_schedule

SMALL = dict(n_steps=32, batch_size=16, n_epochs=2)


def params(model):
    return [p.detach().clone() for p in model.policy.parameters()]


def assert_same(a, b):
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_file_is_plain_data_and_predict_identical(tmp_path):
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, **SMALL).learn(64)
    path = model.save(tmp_path / "m")
    assert path.endswith("m.pt")
    data = torch.load(path, weights_only=True)
    assert data["format"] == "ppo_lib.PPO" and data["num_timesteps"] == 64
    loaded = PPO.load(tmp_path / "m")
    obs = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0],
                                  loaded.predict(obs, deterministic=True)[0])
    assert loaded.n_steps == 32 and loaded.num_timesteps == 64


@pytest.mark.parametrize("env_id, extra", [
    ("CartPole-v1", dict(learning_rate=linear_schedule(1e-3), clip_range=linear_schedule(0.2))),
    ("Pendulum-v1", dict(normalize_obs=True, normalize_reward=True)),
    ("InvertedPendulum-v5", dict(normalize_obs=True, normalize_reward=True)),
])
def test_save_load_continue_equals_uninterrupted(tmp_path, env_id, extra):
    """With the written-out gradient step (the default): its flat buffers are rebuilt after
    the load, and must hold every parameter where the uninterrupted run holds it."""
    def make():
        return PPO("MlpPolicy", env_id, n_envs=2, seed=5, **SMALL, **extra)
    straight = make().learn(128)
    straight.learn(128, reset_num_timesteps=False)

    first = make().learn(128)
    first.save(tmp_path / "half.pt")
    resumed = PPO.load(tmp_path / "half.pt")
    resumed.learn(128, reset_num_timesteps=False)
    assert resumed.num_timesteps == straight.num_timesteps == 256
    for model in (straight, resumed):
        assert model.fast_path and model._gradient_step is not None
        assert model._gradient_step.is_bound()
    assert_same(params(resumed), params(straight))
    assert resumed.logger.rows[-1]["train/loss"] == straight.logger.rows[-1]["train/loss"]
    for key in ("train/loss", "train/value_loss", "train/approx_kl", "rollout/ep_rew_mean"):
        np.testing.assert_array_equal(resumed.logger.get(key), straight.logger.get(key)[2:])


class BoundAtRolloutStart(BaseCallback):
    """Records, at each rollout's start, whether the parameters are the flat buffers' views."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def _on_rollout_start(self):
        step = self.model._gradient_step
        self.seen.append(step is not None and step.is_bound())

    def _on_step(self):
        return True


def test_resumed_and_uninterrupted_runs_collect_from_the_same_tensors(tmp_path):
    """Bound from the first rollout on, in a fresh run and after a load alike (a run that
    bound only at its first update read its first rollout from other memory)."""
    model = PPO("MlpPolicy", "Pendulum-v1", n_envs=2, seed=5, **SMALL)
    fresh = BoundAtRolloutStart()
    model.learn(128, callback=fresh)
    model.save(tmp_path / "m.pt")
    after_load = BoundAtRolloutStart()
    PPO.load(tmp_path / "m.pt").learn(64, callback=after_load, reset_num_timesteps=False)
    assert fresh.seen == [True, True] and after_load.seen == [True]


def test_crash_mid_save_keeps_old_file(tmp_path, monkeypatch):
    model = PPO("MlpPolicy", "CartPole-v1", seed=0, **SMALL)
    path = model.save(tmp_path / "m.pt")
    before = open(path, "rb").read()
    model.learn(32)

    def crashing_save(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"half a file")
        raise KeyboardInterrupt("power cut")
    monkeypatch.setattr(ppo_module.torch, "save", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["m.pt"]  # no temporary file left behind
    monkeypatch.undo()
    assert PPO.load(path).num_timesteps == 0


def test_a_value_a_model_file_cannot_hold_fails_the_save_not_the_load(tmp_path):
    """A hyperparameter of a type torch.load(weights_only=True) refuses: save raises before
    the file replaces anything, rather than writing a model no one can load."""
    from fractions import Fraction

    model = PPO("MlpPolicy", "CartPole-v1", seed=0, **SMALL)
    path = model.save(tmp_path / "m.pt")
    before = open(path, "rb").read()
    model.target_kl = Fraction(1, 100)  # passes the range check, float(Fraction) works
    with pytest.raises(ValueError, match=r"cannot save the model to .*m\.pt'?: it holds a "
                                         r"fractions\.Fraction object.*Nothing was written"):
        model.save(path)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["m.pt"]


def test_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        PPO.load(tmp_path / "nope.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="corrupt.pt.*not a readable ppo_lib model"):
        PPO.load(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="foreign.pt.*not a ppo_lib PPO file"):
        PPO.load(foreign)
    truncated = tmp_path / "trunc.pt"
    PPO("MlpPolicy", "CartPole-v1", **SMALL).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ValueError, match="trunc.pt"):
        PPO.load(truncated)


def test_unsaveable_schedule_warns_and_load_takes_override(tmp_path):
    model = PPO("MlpPolicy", "CartPole-v1", learning_rate=lambda p: 3e-4 * p, **SMALL)
    with pytest.warns(UserWarning, match="learning_rate is a function"):
        model.save(tmp_path / "m.pt")
    loaded = PPO.load(tmp_path / "m.pt", learning_rate=linear_schedule(3e-4))
    assert loaded.lr_schedule(0.5) == pytest.approx(1.5e-4)


def test_custom_net_arch_and_activation_roundtrip(tmp_path):
    model = PPO("MlpPolicy", "CartPole-v1", **SMALL,
                policy_kwargs=dict(net_arch=dict(shared=[16], pi=[8], vf=[8]),
                                   activation_fn=torch.nn.ReLU))
    model.save(tmp_path / "m.pt")
    loaded = PPO.load(tmp_path / "m.pt")
    assert isinstance(loaded.policy.mlp_extractor.shared_net[1], torch.nn.ReLU)
    assert_same(params(model), params(loaded))


def wrapped_cartpole():
    import gymnasium as gym
    return gym.wrappers.TimeAwareObservation(gym.make("CartPole-v1"))  # obs (5,)


def test_wrapped_env_is_not_rebuilt_wrongly(tmp_path):
    model = PPO("MlpPolicy", [wrapped_cartpole], seed=0, **SMALL)
    model.save(tmp_path / "w.pt")
    loaded = PPO.load(tmp_path / "w.pt")  # the bare id would give obs (4,): no env
    assert loaded.env is None
    obs = np.zeros((3, 5), np.float32)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0],
                                  model.predict(obs, deterministic=True)[0])
    with pytest.raises(ValueError, match="no env: pass env="):
        loaded.learn(32)
    again = PPO.load(tmp_path / "w.pt", env=[wrapped_cartpole])
    again.learn(32)
    assert again.num_timesteps == 32


# --- a model file runs no code: names resolve through an allow-list ------------------------
import sys  # noqa: E402
import tempfile  # noqa: E402
import uuid  # noqa: E402

from torch import nn  # noqa: E402

from ppo_lib.policies import CategoricalActorCritic  # noqa: E402


def crafted(tmp_path, change, name="crafted.pt"):
    """A real saved CartPole model with ``change(data)`` applied: what someone could send."""
    base = PPO("MlpPolicy", "CartPole-v1", seed=0, **SMALL).save(tmp_path / f"base-{name}")
    data = torch.load(base, weights_only=True)
    change(data)
    torch.save(data, tmp_path / name)
    return tmp_path / name


def set_policy(name):
    def change(data):
        data["policy"] = name
    return change


def set_kwargs(**kwargs):
    def change(data):
        data["policy_kwargs"].update(kwargs)
    return change


def tag(name):
    return {"__module_class__": name}


def set_env_id(env_id):
    def change(data):
        data["env_id"] = env_id
    return change


@pytest.fixture
def no_imports_no_folders(tmp_path, monkeypatch):
    """Yields a check: no module was imported and no temporary folder made since."""
    PPO.load(PPO("MlpPolicy", "CartPole-v1", **SMALL).save(tmp_path / "warm.pt"))  # warm-up
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmpdir"))
    os.mkdir(tmp_path / "tmpdir")
    before = set(sys.modules)

    def check():
        assert set(sys.modules) == before, set(sys.modules) - before
        assert os.listdir(tmp_path / "tmpdir") == []
    return check


@pytest.mark.parametrize("change, name", [
    (set_policy("sys:exit"), "sys:exit"),
    (set_policy("tempfile:mkdtemp"), "tempfile:mkdtemp"),
    (set_policy("os:system"), "os:system"),
    (set_policy("torch.nn.modules.activation:ReLU"), "ReLU"),  # allowed, but not as a policy
    (set_policy(["sys", "exit"]), "sys"),
    (set_kwargs(activation_fn=tag("os:system")), r"os:system.*policy_kwargs\['activation_fn'\]"),
    (set_kwargs(activation_fn=tag("tempfile:mkdtemp")), "tempfile:mkdtemp"),
    (set_kwargs(activation_fn=tag("torch.nn.modules.activation:NoSuchThing")), "NoSuchThing"),
    (set_kwargs(optimizer_class=tag("sys:exit")), r"policy_kwargs\['optimizer_class'\]"),
    (set_kwargs(features_extractor_class=tag("subprocess:Popen")), "subprocess:Popen"),
    (set_kwargs(net_arch=dict(pi=[8, tag("tempfile:mkdtemp")], vf=[8])),
     r"tempfile:mkdtemp.*policy_kwargs\['net_arch'\]\['pi'\]\[1\]"),
    (set_kwargs(extra=[{"deep": (1, tag("os:system"))}]), "os:system"),
    (set_env_id("tempfile:CartPole-v1"), "tempfile:CartPole-v1.*env="),
])
def test_load_refuses_names_outside_the_allow_list(tmp_path, no_imports_no_folders, change,
                                                   name):
    path = crafted(tmp_path, change)
    with pytest.raises(ValueError, match=name):
        PPO.load(path)
    no_imports_no_folders()


def test_load_refuses_options_save_never_writes(tmp_path, no_imports_no_folders):
    def tensorboard(data):
        data["hyperparameters"]["tensorboard_log"] = str(tmp_path / "tmpdir" / "tb")
    with pytest.raises(ValueError, match="tensorboard_log.*not a file written by PPO.save"):
        PPO.load(crafted(tmp_path, tensorboard))
    no_imports_no_folders()


@pytest.fixture
def fresh_package(tmp_path, monkeypatch):
    """A package not imported yet, whose import would write a marker file."""
    name = f"ppo_lib_marker_{uuid.uuid4().hex}"
    folder = tmp_path / "site" / name
    folder.mkdir(parents=True)
    marker = tmp_path / "imported.txt"
    (folder / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\n"
        f"from ppo_lib.policies import CategoricalActorCritic as Policy\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield name, marker
    assert name not in sys.modules and not marker.exists()


@pytest.mark.parametrize("where", ["policy", "activation_fn", "env_id"])
def test_load_never_imports_a_module_the_file_names(tmp_path, fresh_package, where):
    name, marker = fresh_package
    change = {"policy": set_policy(f"{name}:Policy"),
              "activation_fn": set_kwargs(activation_fn=tag(f"{name}:Act")),
              "env_id": set_env_id(f"{name}:CartPole-v1")}[where]
    with pytest.raises(ValueError, match=name):
        PPO.load(crafted(tmp_path, change))
    assert name not in sys.modules and not marker.exists()


def test_custom_objects_map_a_name_without_importing_it(tmp_path, fresh_package):
    name, _ = fresh_package
    path = crafted(tmp_path, set_policy(f"{name}:Policy"))
    for key in (f"{name}:Policy", "Policy"):
        loaded = PPO.load(path, custom_objects={key: CategoricalActorCritic})
        assert type(loaded.policy) is CategoricalActorCritic


class TinyPolicy(CategoricalActorCritic):
    """A learner's own policy class."""


class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


def test_custom_objects_allow_a_users_own_classes(tmp_path):
    model = PPO(TinyPolicy, "CartPole-v1", seed=0, **SMALL,
                policy_kwargs=dict(activation_fn=Swish)).learn(64)
    model.save(tmp_path / "own.pt")
    with pytest.raises(ValueError, match=r"TinyPolicy.*custom_objects=\{'TinyPolicy': "):
        PPO.load(tmp_path / "own.pt")
    with pytest.raises(ValueError, match=r"Swish.*activation_fn.*torch.nn's activations"):
        PPO.load(tmp_path / "own.pt", custom_objects={"TinyPolicy": TinyPolicy})
    full = f"{TinyPolicy.__module__}:TinyPolicy"
    loaded = PPO.load(tmp_path / "own.pt", custom_objects={full: TinyPolicy, "Swish": Swish})
    assert type(loaded.policy) is TinyPolicy
    assert isinstance(loaded.policy.mlp_extractor.policy_net[1], Swish)
    obs = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0],
                                  model.predict(obs, deterministic=True)[0])
    loaded.learn(32, reset_num_timesteps=False)  # and trains on


def test_custom_objects_replace_arguments_as_sb3_and_must_be_a_dict(tmp_path):
    PPO("MlpPolicy", "CartPole-v1", **SMALL).save(tmp_path / "m.pt")
    loaded = PPO.load(tmp_path / "m.pt", custom_objects={"learning_rate": 1e-4})
    assert loaded.lr_schedule(1.0) == 1e-4
    assert loaded.optimizer.param_groups[0]["lr"] == 1e-4
    with pytest.raises(TypeError, match="custom_objects must be a dict"):
        PPO.load(tmp_path / "m.pt", custom_objects=[TinyPolicy])


def test_save_refuses_a_function_in_policy_kwargs_and_keeps_the_old_file(tmp_path):
    path = PPO("MlpPolicy", "CartPole-v1", **SMALL).save(tmp_path / "m.pt")
    before = open(path, "rb").read()
    model = PPO("MlpPolicy", "CartPole-v1", **SMALL,
                policy_kwargs=dict(activation_fn=lambda: nn.ReLU()))
    with pytest.raises(ValueError, match=r"policy_kwargs\['activation_fn'\] is .*a function"):
        model.save(path)
    assert open(path, "rb").read() == before and os.listdir(tmp_path) == ["m.pt"]


# --- clear errors when saving and loading; a saved file survives bad input ------------------
import builtins  # noqa: E402
import zipfile  # noqa: E402


@pytest.fixture
def read_only_folder(tmp_path, monkeypatch):
    """A folder holding a saved model, made read-only (as root, whom chmod does not stop,
    by refusing to open files there for writing)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    saved = PPO("MlpPolicy", "CartPole-v1", seed=0, **SMALL).save(folder / "m.pt")
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root
        real_open = builtins.open

        def refusing_open(file, mode="r", *args, **kwargs):
            if str(file).startswith(str(folder)) and any(c in mode for c in "wax+"):
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, mode, *args, **kwargs)
        monkeypatch.setattr(builtins, "open", refusing_open)
    yield folder, saved
    folder.chmod(0o755)


def test_saving_into_a_read_only_folder_names_it_and_keeps_the_file(read_only_folder):
    folder, saved = read_only_folder
    before = open(saved, "rb").read()
    model = PPO("MlpPolicy", "CartPole-v1", seed=1, **SMALL).learn(32)
    with pytest.raises(PermissionError, match=rf"cannot save the model to '{saved}'.*"
                                              rf"is '{folder}' writable\?.*unchanged"):
        model.save(saved)
    assert open(saved, "rb").read() == before and os.listdir(folder) == ["m.pt"]


def test_saving_where_no_folder_can_be_made_names_the_path(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    target = tmp_path / "a_file" / "models" / "m.pt"
    model = PPO("MlpPolicy", "CartPole-v1", **SMALL)
    with pytest.raises(OSError, match=rf"cannot save the model to '{target}': its folder "
                                      rf"'{target.parent}' does not exist and cannot be made"):
        model.save(target)
    (tmp_path / "folder.pt").mkdir()
    with pytest.raises(OSError, match=r"cannot save the model to .*folder.pt'"):
        model.save(tmp_path / "folder.pt")
    assert os.listdir(tmp_path / "folder.pt") == []
    # a missing folder that can be made is made (as SB3's save does)
    assert PPO.load(model.save(tmp_path / "new" / "deeper" / "m")).num_timesteps == 0


def test_loading_with_an_env_of_other_spaces_is_refused_and_the_file_kept(tmp_path):
    path = PPO("MlpPolicy", "CartPole-v1", **SMALL).save(tmp_path / "m.pt")
    before = open(path, "rb").read()
    for env in ("Acrobot-v1", "Pendulum-v1", [wrapped_cartpole]):
        with pytest.raises(ValueError, match=r"(?s)env has observation space .* but the model in "
                                             r".*m.pt' was trained on Box.*\(4,\).*Discrete\(2\)"):
            PPO.load(path, env=env)
    assert open(path, "rb").read() == before
    assert PPO.load(path, env="CartPole-v1").env.num_envs == 1


def test_an_sb3_zip_is_named_with_how_to_load_it(tmp_path):
    # the members SB3's save_to_zip_file writes
    with zipfile.ZipFile(tmp_path / "sb3_model.zip", "w") as archive:
        for name in ("data", "pytorch_variables.pth", "policy.pth", "policy.optimizer.pth",
                     "_stable_baselines3_version", "system_info.txt"):
            archive.writestr(name, "{}")
    for path in (tmp_path / "sb3_model.zip", tmp_path / "sb3_model"):
        with pytest.raises(ValueError, match=r"sb3_model.zip' is a Stable-Baselines3 model.*"
                                             r"stable_baselines3.PPO.load\("):
            PPO.load(path)


def test_a_real_sb3_file_is_named(tmp_path):
    sb3 = pytest.importorskip("stable_baselines3")
    sb3.PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, device="cpu").save(
        tmp_path / "real")
    with pytest.raises(ValueError, match="real.zip' is a Stable-Baselines3 model"):
        PPO.load(tmp_path / "real")
