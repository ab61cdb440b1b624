"""The one configuration: every knob by environment variable and by TOML key, with its source;
precedence; unknown names and bad values named; what reaches /status and the checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from services.live.config import LiveSettings
from services.training.config import TrainingSettings
from services.validation.config import ValidationSettings
from shared.cli.data import DataSettings
from shared.config import NetworkConfig, TrainingConfig
from shared.core.settings import ConfigError, known_variables, load_settings
from shared.volume.candidates import config_object, read_config
from tests.service_helpers import ROOT

CLASSES = {"training": TrainingSettings, "validation": ValidationSettings, "live": LiveSettings, "data": DataSettings}

# a valid value other than the default, where "default + 1" or "x 1.5" is not one
SPECIAL = {
    "instrument": "EURUSD", "granularity": "M5", "host": "127.0.0.1", "log_level": "DEBUG", "device": "cpu",
    "sessions.train_fraction": 0.6, "sessions.validation_fraction": 0.2,
    "exploration.temperature_end": 0.25, "risk.flatten_retry_seconds": 2.0, "network.tcn_dilations": (1, 2),
    "max_p_value": 0.05, "exploration.epsilon": 0.1, "replay.discount": 0.99,
    "search.dirichlet_fraction": 0.25, "network.dropout": 0.2, "sessions.walk_forward_windows": 3,
    "instruments": ("EURUSD", "BTCUSD"), "demo_instruments": ("GBPJPY", "BTCUSD"),
    "tft.hidden": 64, "tft.heads": 8, "tft.quantiles": (0.1, 0.25, 0.5, 0.75, 0.9), "tft.dropout": 0.2,
    "tft.holdout_share": 0.2, "forecast_policy.lower_quantile": 0.1, "forecast_policy.upper_quantile": 0.9,
    "forecast_policy.horizon_bars": 12,
    "dt.hidden": 128, "dt.heads": 4, "dt.discount": 0.9, "dt.expert_epsilons": (0.0, 0.5),
    "dt.target_return_quantile": 0.5, "dt.holdout_share": 0.2,
    "guardian.hidden": (128, 64), "guardian.volatile_quantile": 0.8,
    "dt.muzero_expert": Path("/tmp/micro-elsewhere/model-ep00000064.pt"), "min_deflated_sharpe": 0.9,
    "network.chance_codes": 8, "learner.learning_rate_final": 1e-4,
}


def _other_value(name: str, annotation, default):
    if name in SPECIAL:
        return SPECIAL[name]
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return next(choice for choice in args if choice != default)
    if annotation is bool:
        return not default
    if annotation is Path:
        return Path("/tmp/micro-elsewhere")
    if default is None:  # an optional number, off by default
        return 3.0
    if annotation is int:
        return default + 1
    if annotation is float:
        return default * 1.5 if default else 0.5
    raise AssertionError(f"no test value for {name} ({annotation})")


def _knob_cases():
    for section, cls in CLASSES.items():
        for knob in cls.knobs():
            yield pytest.param(section, knob, id=f"{section}.{knob.name}")


def _read(settings, path):
    value = settings
    for attribute in path:
        value = getattr(value, attribute)
    return value


def _as_text(value) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(json.dumps(v) if isinstance(v, str) else str(v) for v in value) + "]"
    return json.dumps(str(value))


# an OANDA broker or feed needs credentials (read by shared.core.oanda), and an OANDA broker a live feed
NEEDS = {"live.broker": {"LIVE_ALLOW_OANDA_WITH_REPLAY_FEED": "true"}, "live.feed": {}}


@pytest.mark.parametrize("section, knob", list(_knob_cases()))
def test_every_knob_is_set_by_environment_and_by_toml_and_reports_its_source(section, knob, tmp_path, monkeypatch):
    cls = CLASSES[section]
    default = _read(cls(), knob.path)
    expected = value = _other_value(knob.name, knob.annotation, default)
    extra = NEEDS.get(f"{section}.{knob.name}", {})
    if f"{section}.{knob.name}" in NEEDS:
        for name, secret in {"OANDA_TOKEN": "t" * 20, "OANDA_ACCOUNT": "001-001-1-001", "OANDA_ENV": "practice"}.items():
            monkeypatch.setenv(name, secret)

    by_env = load_settings(cls, environ={knob.variables[0]: _as_text(value), **extra})
    assert _read(by_env, knob.path) == expected
    assert by_env.effective()[knob.name]["source"] == "env" and by_env.sources()[knob.name] == "env"

    *tables, key = knob.toml_keys[0]
    (tmp_path / "micro.toml").write_text(f"[{'.'.join(tables)}]\n{key} = {_toml_value(value)}\n")
    by_file = load_settings(cls, environ={"MICRO_CONFIG": str(tmp_path / "micro.toml"), **extra})
    assert _read(by_file, knob.path) == expected
    assert by_file.effective()[knob.name] == {"value": json.loads(json.dumps(by_env.effective()[knob.name]["value"])),
                                              "source": "file"}

    if section == "training" and knob.path[0] == "run":  # the checkpoint holds the whole TrainingConfig
        stored = config_object(by_env.run, by_env.sources())
        assert _read(read_config({"config": stored}, "test"), knob.path[1:]) == expected
        assert stored["sources"] == {knob.name: "env"}


def test_precedence_is_cli_over_environment_over_env_file_over_toml_over_defaults(tmp_path):
    (tmp_path / "micro.toml").write_text("[training]\nseed = 1\nkeep_checkpoints = 9\n"
                                         "[training.learner]\nbatch_size = 16\nlearning_rate = 0.01\n")
    (tmp_path / ".env").write_text("MICRO_CONFIG=micro.toml\nTRAINING_SEED=2\nTRAINING_LEARNER__BATCH_SIZE=32\n")
    environ = {"MICRO_ENV_FILE": str(tmp_path / ".env"), "TRAINING_SEED": "3"}
    settings = load_settings(TrainingSettings, environ=environ, cli={"learner.learning_rate": "0.02"})
    assert settings.run.seed == 3 and settings.run.learner.batch_size == 32  # env over .env over the file
    assert settings.run.keep_checkpoints == 9 and settings.run.learner.learning_rate == 0.02  # file; cli on top
    assert settings.sources() == {"seed": "env", "learner.batch_size": ".env", "keep_checkpoints": "file",
                                  "learner.learning_rate": "cli"}
    assert settings.effective()["episodes_per_iteration"] == {"value": 64, "source": "default"}


def test_the_market_is_shared_and_a_service_may_override_it(tmp_path):
    (tmp_path / "micro.toml").write_text('instrument = "EUR_USD"\ngranularity = "M5"\n[live]\ninstrument = "USDJPY"\n')
    environ = {"MICRO_CONFIG": str(tmp_path / "micro.toml")}
    assert load_settings(TrainingSettings, environ=environ).instrument == "EURUSD"  # OANDA's spelling, one name
    assert load_settings(ValidationSettings, environ=environ).granularity == "M5"
    assert load_settings(LiveSettings, environ=environ).instrument == "USDJPY"
    both = {"MICRO_INSTRUMENT": "GBPUSD", "LIVE_INSTRUMENT": "GBP_JPY"}
    assert load_settings(LiveSettings, environ=both).instrument == "GBPJPY"


@pytest.mark.parametrize("environ, message", [
    ({"TRAINING_SIMULATONS": "50"}, "unknown setting TRAINING_SIMULATONS.*did you mean TRAINING_SEARCH__SIMULATIONS"),
    ({"TRAINING_LEARNING_RATE": "0.5"}, "did you mean .*TRAINING_LEARNER__LEARNING_RATE"),
    ({"TRAINING_SIMULATIONS": "50"}, "TRAINING_SIMULATIONS .* is now TRAINING_SEARCH__SIMULATIONS"),
    ({"MICRO_INSTRUMNET": "EURUSD"}, "did you mean MICRO_INSTRUMENT"),
    ({"TRAINING_LEARNER__LEARNING_RATE": "-1"}, "learning_rate.*TRAINING_LEARNER__LEARNING_RATE"),
    ({"TRAINING_SEARCH__SIMULATIONS": "many"}, "TRAINING_SEARCH__SIMULATIONS.*valid integer"),
    ({"TRAINING_ENV__ACTION_SPACE": "options"}, "TRAINING_ENV__ACTION_SPACE"),
    ({"TRAINING_INSTRUMENT": "XAGUSD"}, "TRAINING_INSTRUMENT.*unknown instrument"),
    ({"TRAINING_NETWORK__NUM_ACTIONS": "5"}, "unknown setting TRAINING_NETWORK__NUM_ACTIONS"),  # derived, not a knob
])
def test_unknown_names_and_bad_values_are_named(environ, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(TrainingSettings, environ=environ)


def test_another_services_variables_and_shared_ones_are_not_unknown():
    settings = load_settings(TrainingSettings, environ={"LIVE_MAX_UNITS": "2", "VALIDATION_MIN_TRADES": "3",
                                                        "MICRO_DEVICE": "cpu", "CHECKPOINT_DIR": "/tmp/x"})
    assert settings.checkpoint_dir == Path("/tmp/x")
    assert {"LIVE_MAX_UNITS", "VALIDATION_MIN_TRADES", "TRAINING_LEARNER__LEARNING_RATE"} <= known_variables()


@pytest.mark.parametrize("text, message", [
    ("[training.learner]\nlearnig_rate = 0.1\n", "unknown key training.learner.learnig_rate.*learning_rate"),
    ("[trainin]\nseed = 1\n", "unknown key 'trainin'.*did you mean training"),
    ("[training]\nseed = \n", "not TOML"),
    ("[training]\nseed = 'one'\n", "seed .*MICRO_CONFIG.*valid integer"),
])
def test_bad_toml_is_named(tmp_path, text, message):
    (tmp_path / "micro.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(TrainingSettings, environ={"MICRO_CONFIG": str(tmp_path / "micro.toml")})


def test_derived_values_follow_what_they_derive_from():
    settings = load_settings(TrainingSettings, environ={"TRAINING_ENV__ACTION_SPACE": "sized_positions",
                                                        "TRAINING_REPLAY__DISCOUNT": "0.99"})
    assert settings.run.network.num_actions == 7 and settings.run.search.discount == 0.99
    effective = settings.effective()
    assert effective["network.num_actions"] == {"value": 7, "source": "derived"}
    assert effective["search.discount"]["source"] == "derived"


def test_each_ray_actor_plays_a_share_of_the_learn_round_unless_set():
    assert TrainingConfig(episodes_per_iteration=64, actors=2).actor_batch_episodes == 32
    assert TrainingConfig(episodes_per_iteration=64, actors=3).actor_batch_episodes == 21
    assert TrainingConfig(episodes_per_iteration=4, actors=8).actor_batch_episodes == 1
    assert TrainingConfig(episodes_per_iteration=64, actors=2, actor_episodes=64).actor_batch_episodes == 64
    with pytest.raises(ValueError, match="actor_episodes"):
        TrainingConfig(actor_episodes=-1)


def test_env_example_names_only_known_settings():
    names = [line.split("=", 1)[0].lstrip("# ").strip() for line in (ROOT / ".env.example").read_text().splitlines()
             if "=" in line and line.lstrip("# ")[:1].isupper()]
    prefixed = [n for n in names if n.startswith(("TRAINING_", "VALIDATION_", "LIVE_", "DATA_", "MICRO_"))]
    assert prefixed, "the example shows settings"
    assert set(prefixed) <= known_variables(), set(prefixed) - known_variables()


def test_a_service_with_an_unknown_variable_exits_2_naming_it(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "TRAINING_SIMULATONS": "50", "MICRO_ENV_FILE": str(tmp_path / "absent.env")}
    done = subprocess.run([sys.executable, "-m", "services.validation"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**env, "VALIDATION_MIN_TRADEZ": "3"})
    assert done.returncode == 2 and "VALIDATION_MIN_TRADEZ" in done.stderr and "VALIDATION_MIN_TRADES" in done.stderr


def test_a_setting_in_dot_env_reaches_a_service(tmp_path):
    (tmp_path / ".env").write_text("VALIDATION_MAX_P_VALUE=2\n")  # out of range: the service must say so
    done = subprocess.run([sys.executable, "-m", "services.validation"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "MICRO_ENV_FILE": str(tmp_path / ".env")})
    assert done.returncode == 2 and "VALIDATION_MAX_P_VALUE" in done.stderr and ".env" in done.stderr


def test_a_toml_setting_reaches_the_status_page_and_the_checkpoint(features, tmp_path):
    """The training service's own objects, as its __main__ builds them."""
    import torch

    from services.training.service import TrainingService
    from shared.training.trainer import Trainer

    (tmp_path / "micro.toml").write_text("[training]\nepisodes_per_iteration = 2\ncheckpoint_interval_episodes = 2\n"
                                         "[training.network]\ntcn_channels = 16\nhidden = 32\n"
                                         "[training.learner]\nlearning_rate = 0.004\n")
    settings = load_settings(TrainingSettings, environ={"MICRO_CONFIG": str(tmp_path / "micro.toml"),
                                                        "CHECKPOINT_DIR": str(tmp_path / "ck")})
    trainer = Trainer(features, settings.checkpoint_dir, settings.run, config_sources=settings.sources())
    settings = settings.model_copy(update={"run": trainer.config})
    try:
        report = trainer.run_iteration()
        page = TrainingService(settings, trainer).status_page()
        assert page["config"]["learner.learning_rate"] == {"value": 0.004, "source": "file"}
        assert page["config"]["env.episode_bars"] == {"value": features.session_config.length_bars, "source": "derived"}
        payload = torch.load(settings.checkpoint_dir / "training" / report.checkpoint, weights_only=True)
        assert payload["config"]["training"]["learner"]["learning_rate"] == 0.004
        assert payload["config"]["sources"]["network.hidden"] == "file"
        assert read_config(payload, "x").network == NetworkConfig(tcn_channels=16, hidden=32)
    finally:
        trainer.close()


def test_training_config_round_trips():
    config = TrainingConfig(network=NetworkConfig(tcn_dilations=(1, 3)), episodes_per_iteration=3)
    assert TrainingConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_the_data_job_reads_the_session_rules_and_refuses_an_empty_configured_market(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "MICRO_ENV_FILE": str(tmp_path / "absent.env"), "MICRO_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "shared.cli.data", "prepare"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**env, "MICRO_INSTRUMENT": "EURUSD"})
    assert done.returncode == 2 and "holds no EURUSD M1 bars" in done.stderr and "import" in done.stderr
    done = subprocess.run([sys.executable, "-m", "shared.cli.data", "--quiet", "prepare"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**env, "DATA_SESSIONS__LENGTH_BARS": "240"})
    assert done.returncode == 0, done.stderr
    from shared.features.store import load_feature_set

    features = load_feature_set(tmp_path / "market.duckdb", "GBPJPY", "M1")
    assert features.session_config.length_bars == 240
    settings = load_settings(TrainingSettings, environ={})
    from shared.training.trainer import Trainer

    trainer = Trainer(features, tmp_path / "ck", TrainingConfig(network=NetworkConfig(tcn_channels=8, hidden=16),
                                                                 episodes_per_iteration=1))
    try:
        assert trainer.config.env.episode_bars == 240 and settings.run.env.episode_bars == 360  # derived from the store
    finally:
        trainer.close()
