"""Configuration: composition precedence, env kwargs routing, error messages, round trips, presets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from marl.config import (
    PACKAGED_CONFIG_DIR,
    Config,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    config_to_yaml,
    list_presets,
    load_config,
    parse_overrides,
    resolve_config_path,
)
from marl.errors import ConfigError, MarlError

# --------------------------------------------------------------------------------------------------------
# A tiny config directory where every layer sets a distinguishable value
# --------------------------------------------------------------------------------------------------------


def _write(path: Path, data: dict | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


@pytest.fixture
def layered(tmp_path: Path) -> Path:
    """default.yaml picks algorithm `a`; experiment `exp` picks `b`; each layer sets some values."""
    root = tmp_path / "configs"
    _write(root / "default.yaml", {"defaults": {"algorithm": "a"}, "algorithm": {"epochs": 7, "gamma": 0.7}})
    _write(
        root / "algorithm/a.yaml",
        {"name": "mappo", "lr": 0.1, "epochs": 1, "gamma": 0.1, "clip_epsilon": 0.11},
    )
    _write(
        root / "algorithm/b.yaml",
        {"name": "ippo", "lr": 0.2, "epochs": 2, "gamma": 0.2, "clip_epsilon": 0.22},
    )
    _write(root / "experiment/exp.yaml", {"defaults": {"algorithm": "b"}, "algorithm": {"gamma": 0.8}})
    return root


def test_defaults_match_schema_plus_presets():
    cfg = load_config([])
    assert cfg.algorithm == type(cfg.algorithm)()  # mappo.yaml repeats the schema defaults
    assert cfg.env.name == "vmas/navigation" and cfg.env.kwargs == {"n_agents": 3}
    assert cfg.sharing == type(cfg.sharing)()
    assert cfg.experiment.name == "quickstart"


def test_preset_beats_schema_default(layered: Path):
    cfg = load_config([], layered)
    assert cfg.algorithm.lr == 0.1 and cfg.algorithm.clip_epsilon == 0.11  # from a.yaml
    assert cfg.algorithm.max_grad_norm == 1.0  # schema default, set by nobody


def test_default_body_beats_preset(layered: Path):
    assert load_config([], layered).algorithm.epochs == 7


def test_experiment_choice_beats_default_choice(layered: Path):
    cfg = load_config(["experiment=exp"], layered)
    assert cfg.algorithm.name == "ippo" and cfg.algorithm.lr == 0.2


def test_cli_choice_beats_experiment_choice(layered: Path):
    cfg = load_config(["experiment=exp", "algorithm=a"], layered)
    assert cfg.algorithm.name == "mappo" and cfg.algorithm.lr == 0.1


def test_experiment_body_beats_default_body(layered: Path):
    cfg = load_config(["experiment=exp"], layered)
    assert cfg.algorithm.gamma == 0.8  # a/b presets and default.yaml body all lose
    assert cfg.algorithm.epochs == 7  # default body still beats preset b where the experiment is silent
    assert cfg.experiment.name == "exp"  # an experiment names the run unless its body says otherwise


def test_cli_override_beats_everything(layered: Path):
    cfg = load_config(["experiment=exp", "algorithm.gamma=0.9", "algorithm.epochs=9"], layered)
    assert (cfg.algorithm.gamma, cfg.algorithm.epochs) == (0.9, 9)


def test_override_order_in_args_does_not_matter_for_layers():
    a = load_config(["algorithm.lr=3e-4", "algorithm=ippo"])
    b = load_config(["algorithm=ippo", "algorithm.lr=3e-4"])
    assert a == b and a.algorithm.lr == 3e-4 and a.algorithm.name == "ippo"


def test_experiment_from_path(tmp_path: Path):
    path = _write(
        tmp_path / "mine.yaml",
        "defaults: {env: vmas/dispersion}\nexperiment: {seed: 7}\nenv: {n_agents: 5}\n"
        "model: {hidden_sizes: [32]}\n",
    )
    cfg = load_config([f"experiment={path}", "experiment.total_frames=12000"])
    assert cfg.env.name == "vmas/dispersion" and cfg.env.kwargs == {
        "n_agents": 5,
        "n_food": 4,
        "share_reward": True,
    }
    assert (cfg.experiment.seed, cfg.experiment.name, cfg.experiment.total_frames) == (7, "mine", 12000)
    assert cfg.model.hidden_sizes == [32]


def test_cli_values_are_yaml_parsed():
    choices, overrides, resume = parse_overrides(
        [
            "env=vmas/dispersion",
            "algorithm.lr=5e-4",
            "a.b=true",
            "a.c=[64,64]",
            "a.d=null",
            "a.e=300_000",
            "a.f=x",
        ]
    )
    assert choices == {"env": "vmas/dispersion"} and resume is None
    assert overrides == [
        ("algorithm.lr", 5e-4),
        ("a.b", True),
        ("a.c", [64, 64]),
        ("a.d", None),
        ("a.e", 300_000),
        ("a.f", "x"),
    ]


def test_resume_is_returned_separately_and_ignored_by_load_config():
    choices, overrides, resume = parse_overrides(["resume=results/runs/x", "experiment.total_frames=10"])
    assert resume == "results/runs/x" and choices == {} and overrides == [("experiment.total_frames", 10)]
    assert load_config(["resume=results/runs/x"]) == load_config([])


def test_int_accepted_for_float_and_integral_float_for_int():
    cfg = load_config(["algorithm.lr=1", "experiment.total_frames=3e5"])
    assert isinstance(cfg.algorithm.lr, float) and cfg.algorithm.lr == 1.0
    assert cfg.experiment.total_frames == 300_000 and isinstance(cfg.experiment.total_frames, int)


# --------------------------------------------------------------------------------------------------------
# env kwargs routing
# --------------------------------------------------------------------------------------------------------


def test_unknown_env_keys_become_kwargs():
    cfg = load_config(["env=vmas/dispersion", "env.n_agents=6", "env.kwargs.n_food=6", "env.num_envs=30"])
    assert cfg.env.kwargs == {"n_agents": 6, "n_food": 6, "share_reward": True}
    assert cfg.env.num_envs == 30 and cfg.env.continuous_actions is False


def test_env_scenario_without_preset_uses_schema_defaults():
    cfg = load_config(["env=vmas/wheel"])
    assert cfg.env.name == "vmas/wheel" and cfg.env.kwargs == {}
    assert cfg.env.num_envs == 60 and cfg.env.continuous_actions is True


def test_switching_env_preset_drops_the_other_presets_kwargs():
    assert load_config(["env=vmas/balance"]).env.kwargs == {"n_agents": 3}


# --------------------------------------------------------------------------------------------------------
# Errors: each names the cause, the allowed values and (where promised) the closest match
# --------------------------------------------------------------------------------------------------------

ERRORS = {
    "unknown key": (["algorithm.lrr=1"], ["'algorithm.lrr'", "gae_lambda", "Did you mean 'algorithm.lr'?"]),
    "unknown nested key": (
        ["sharing.actor.schem=x"],
        ["scheme, agent_id", "Did you mean 'sharing.actor.scheme'?"],
    ),
    "unknown section": (["algoritm.lr=1"], ["'algoritm'", "experiment, env", "Did you mean 'algorithm.lr'?"]),
    "unknown group": (["algoritm=mappo"], ["'algoritm'", "Did you mean 'algorithm=mappo'?"]),
    "unknown algorithm preset": (
        ["algorithm=mapo"],
        ["'mapo'", "ippo, mappo", "Did you mean 'algorithm=mappo'?"],
    ),
    "unknown sharing preset": (
        ["sharing=hyperr"],
        ["hyper_linear, hyper_mip, independent", "Did you mean 'sharing=hyper'?"],
    ),
    "unknown env preset": (
        ["env=navigaton"],
        ["vmas/balance", "env=vmas/<scenario>", "'env=vmas/navigation'"],
    ),
    "unknown experiment": (["experiment=smok"], ["'smok'", "smoke", "experiment=path/to/file.yaml"]),
    "float type": (["algorithm.lr=abc"], ["'algorithm.lr'", "a number", "'abc'"]),
    "int type": (["experiment.seed=1.5"], ["'experiment.seed'", "an integer", "1.5"]),
    "list type": (["model.hidden_sizes=64"], ["'model.hidden_sizes'", "a list of integers", "64"]),
    "bool type": (
        ["experiment.progress=yes please"],
        ["'experiment.progress'", "true/false", "'yes please'"],
    ),
    "literal": (
        ["algorithm.name=ppo"],
        ["'algorithm.name'", "mappo, ippo", "Did you mean 'algorithm.name=ippo'?"],
    ),
    "literal activation": (
        ["model.activation=rellu"],
        ["tanh, relu, elu", "Did you mean 'model.activation=relu'?"],
    ),
    "malformed": (["algorithm.lr"], ["'algorithm.lr'", "key=value"]),
    "bad yaml value": (["model.hidden_sizes=[64,"], ["'model.hidden_sizes'", "YAML"]),
    "num_envs positive": (["env.num_envs=0"], ["'env.num_envs'", "positive"]),
    "frames_per_batch positive": (
        ["experiment.frames_per_batch=-6"],
        ["'experiment.frames_per_batch'", "positive"],
    ),
    "epochs positive": (["algorithm.epochs=0"], ["'algorithm.epochs'", "positive"]),
    "minibatch positive": (["algorithm.minibatch_size=0"], ["'algorithm.minibatch_size'", "positive"]),
    "total_frames positive": (["experiment.total_frames=0"], ["'experiment.total_frames'", "positive"]),
    "gamma zero": (["algorithm.gamma=0"], ["'algorithm.gamma'", "(0, 1]"]),
    "gamma above one": (["algorithm.gamma=1.01"], ["'algorithm.gamma'", "(0, 1]"]),
    "gae_lambda": (["algorithm.gae_lambda=-0.1"], ["'algorithm.gae_lambda'", "[0, 1]"]),
    "clip_epsilon": (["algorithm.clip_epsilon=0"], ["'algorithm.clip_epsilon'", "> 0"]),
    "lr": (["algorithm.lr=-1e-3"], ["'algorithm.lr'", "> 0"]),
    "divisible": (["env.num_envs=64"], ["not divisible", "frames_per_batch=5952", "env.num_envs=60"]),
    "minibatch too big": (
        ["algorithm.minibatch_size=7000"],
        ["'algorithm.minibatch_size=7000'", "frames_per_batch"],
    ),
    "roles overlap": (["sharing.roles={a: [0, 1], b: [1, 2]}"], ["Agent 1", "disjoint"]),
    "role empty": (["sharing.roles={a: [0, 1, 2], b: []}"], ["'sharing.roles.b'", "empty"]),
    "roles out of range": (["sharing.roles={a: [0, 1, 2, 3]}"], ["[3]", "n_agents=3"]),
    "grouped needs roles": (["sharing=grouped"], ["sharing.roles", "experiment file", "command line"]),
    "grouped covers all": (["sharing=grouped", "sharing.roles={a: [0, 1]}"], ["agents [2]", "grouped"]),
    "agent_id not shared": (["sharing=hyper", "sharing.actor.agent_id=true"], ["agent_id", "scheme=hyper"]),
    "device": (["experiment.device=gpu"], ["'experiment.device'", "'gpu'", "cuda:N"]),
    "env device": (["env.device=cuda:x"], ["'env.device'", "cuda:N"]),
    "env name": (["env.name=navigation"], ["'env.name'", "vmas/<scenario>"]),
    "ippo state critic": (
        ["algorithm=ippo", "algorithm.critic_input=state"],
        ["critic_input", "ippo", "mappo"],
    ),
    "no sub-keys": (["algorithm.lr.x=1"], ["'algorithm.lr.x'", "no sub-keys"]),
    "section not a mapping": (["sharing.actor=null"], ["'sharing.actor'", "scheme, agent_id"]),
    "empty resume": (["resume="], ["resume", "run directory"]),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_error_messages(name: str):
    args, expected = ERRORS[name]
    with pytest.raises(ConfigError) as info:
        load_config(args)
    message = str(info.value)
    for part in expected:
        assert part in message, f"{part!r} not in: {message}"
    assert "\n" not in message  # one paragraph


def test_config_error_is_a_marl_error():
    assert issubclass(ConfigError, MarlError)


def test_errors_in_files_name_the_file(tmp_path: Path):
    root = tmp_path / "configs"
    _write(root / "default.yaml", {"defaults": {"algorithm": "bad"}})
    _write(root / "algorithm/bad.yaml", {"lrr": 0.1})
    with pytest.raises(ConfigError, match=r"'algorithm.lrr' \(.*bad.yaml\).*Did you mean 'algorithm.lr'"):
        load_config([], root)


def test_yaml_syntax_error_names_the_file(tmp_path: Path):
    root = tmp_path / "configs"
    _write(root / "default.yaml", "experiment:\n  name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"YAML syntax error in .*default.yaml at line \d+"):
        load_config([], root)


def test_experiment_file_syntax_error_names_the_file(tmp_path: Path):
    path = _write(tmp_path / "broken.yaml", "algorithm:\n  lr: 1\n bad indent: 2\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config([f"experiment={path}"])


def test_missing_experiment_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config([f"experiment={tmp_path / 'nope.yaml'}"])


def test_unknown_group_in_defaults(tmp_path: Path):
    root = tmp_path / "configs"
    _write(root / "default.yaml", {"defaults": {"algoritm": "mappo"}})
    with pytest.raises(ConfigError, match=r"'algoritm'.*default.yaml.*Did you mean 'algorithm'"):
        load_config([], root)


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="Did you mean 'model.hidden_sizes'"):
        config_from_dict({"model": {"hidden_size": [64]}})


# --------------------------------------------------------------------------------------------------------
# Round trips, overrides on an existing config, presets
# --------------------------------------------------------------------------------------------------------

SAMPLES = [
    [],
    ["env=vmas/dispersion", "env.n_agents=4", "sharing=hyper", "algorithm.lr=5e-4"],
    ["experiment=dispersion_grouped", "algorithm=ippo", "model.hidden_sizes=[64, 32]"],
    ["sharing=shared_id", "experiment.device=cuda:1", "env.device=cpu", "algorithm.critic_input=state"],
]


@pytest.mark.parametrize("args", SAMPLES)
def test_round_trip(args: list[str]):
    cfg = load_config(args)
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert config_from_dict(yaml.safe_load(config_to_yaml(cfg))) == cfg


def test_config_to_dict_is_plain_and_yaml_safe():
    cfg = load_config(["experiment=dispersion_grouped"])
    cfg.model.hidden_sizes = (64, 64)  # tuples become lists
    data = config_to_dict(cfg)
    assert data["model"]["hidden_sizes"] == [64, 64]
    assert yaml.safe_load(yaml.safe_dump(data)) == data
    assert list(data) == [f.name for f in dataclasses.fields(Config)]


def test_config_from_dict_fills_missing_with_defaults():
    assert config_from_dict({}) == Config()
    assert config_from_dict({"algorithm": {"name": "ippo"}}).algorithm.name == "ippo"


def test_apply_overrides_returns_validated_copy():
    cfg = load_config([])
    longer = apply_overrides(cfg, [("experiment.total_frames", 600_000), ("env.n_agents", 5)])
    assert longer.experiment.total_frames == 600_000 and longer.env.kwargs["n_agents"] == 5
    assert cfg.experiment.total_frames == 180_000 and cfg.env.kwargs["n_agents"] == 3
    with pytest.raises(ConfigError, match="'algorithm.gamma'"):
        apply_overrides(cfg, [("algorithm.gamma", 2)])


def test_roles_subkey_override_merges():
    cfg = load_config(["experiment=dispersion_grouped", "sharing.roles.right=[2]", "sharing.roles.third=[3]"])
    assert cfg.sharing.roles == {"left": [0, 1], "right": [2], "third": [3]}


def test_list_presets():
    assert list_presets("algorithm") == ["ippo", "mappo"]
    assert list_presets("env") == [
        "native/cooking",
        "native/matrix_game",
        "pettingzoo",
        "vmas/balance",
        "vmas/dispersion",
        "vmas/navigation",
        "vmas/patrol_search",
    ]
    assert list_presets("sharing") == [
        "grouped",
        "hyper",
        "hyper_linear",
        "hyper_mip",
        "independent",
        "shared",
        "shared_id",
    ]
    assert list_presets("model") == []


def test_packaged_presets_are_the_repository_configs():
    assert (PACKAGED_CONFIG_DIR / "default.yaml").is_file()
    assert PACKAGED_CONFIG_DIR.resolve() == (Path(__file__).resolve().parents[1] / "configs")


def test_user_config_dir_overrides_packaged_presets(tmp_path, monkeypatch):
    """$MARL_CONFIG_DIR layers over the packaged presets: its files win, the rest still load."""
    (tmp_path / "algorithm").mkdir()
    (tmp_path / "algorithm" / "ippo.yaml").write_text("name: ippo\nlr: 0.123\n")
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("experiment: {total_frames: 4242}\n")
    monkeypatch.setenv("MARL_CONFIG_DIR", str(tmp_path))
    cfg = load_config(["algorithm=ippo", "experiment=mine"])
    assert cfg.algorithm.lr == 0.123 and cfg.experiment.total_frames == 4242
    assert cfg.env.name == "vmas/navigation"  # default.yaml and env presets come from the package
    assert "mine" in list_presets("experiment") and "hypermarl_dispersion" in list_presets("experiment")


def test_sweep_and_pareto_files_resolve_from_the_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty directory: no configs/ here
    for given in ("configs/sweeps/dispersion.yaml", "sweeps/dispersion.yaml", "dispersion"):
        assert resolve_config_path(given, "sweeps") == PACKAGED_CONFIG_DIR / "sweeps" / "dispersion.yaml"
    with pytest.raises(ConfigError, match="none of the packaged sweeps files"):
        resolve_config_path("nope.yaml", "sweeps")


ROLES = "sharing.roles={a: [0, 1], b: [2]}"
PRESETS = [(g, p) for g in ("algorithm", "env", "sharing", "experiment") for p in list_presets(g)]


@pytest.mark.parametrize(("group", "preset"), PRESETS, ids=[f"{g}={p}" for g, p in PRESETS])
def test_every_preset_loads(group: str, preset: str):
    extra = [ROLES] if (group, preset) == ("sharing", "grouped") else []
    cfg = load_config([f"{group}={preset}", *extra])
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_preset_contents():
    assert load_config(["algorithm=ippo"]).algorithm == dataclasses.replace(Config().algorithm, name="ippo")
    d = load_config(["env=vmas/dispersion"]).env
    assert (d.continuous_actions, d.max_steps) == (False, 100)
    assert d.kwargs == {"n_agents": 4, "n_food": 4, "share_reward": True}
    assert load_config(["sharing=shared_id"]).sharing.critic.agent_id is True
    h = load_config(["sharing=hyper_linear"]).sharing
    assert (h.actor.scheme, h.critic.scheme, h.hyper.variant) == ("hyper", "hyper", "linear")
    assert load_config(["sharing=independent"]).sharing.actor.scheme == "independent"
