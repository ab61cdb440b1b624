"""Loading a service's settings: defaults < TOML file < .env < process environment < command line.

A settings class (services/<name>/config.py) is a frozen pydantic model whose fields are
the service's own values and the stage configs of shared/config/, contained whole. Every
leaf value is one *knob* with one public name, `learner.learning_rate`, and from it:

* the environment variable `<PREFIX>LEARNER__LEARNING_RATE` (`TRAINING_`, `VALIDATION_`,
  `LIVE_`, `DATA_`), in the process environment or in `.env` (`MICRO_ENV_FILE`, default
  `./.env`; an absent file is no error);
* the TOML key `learning_rate` in table `[training.learner]` of the file `MICRO_CONFIG`
  names (relative to the `.env` it is named in, else to the working directory);
* `--set learner.learning_rate=...` on the command line (micro).

A field marked `flatten` contributes no name part (`ValidationSettings.run.gate.min_trades` is
`VALIDATION_MIN_TRADES`); a field marked `derived` is computed from others and is no knob.
The market and the volume are shared by every service: `MICRO_INSTRUMENT` (or several:
`MICRO_INSTRUMENTS=EURUSD,BTCUSD`, one model for all of them, the first being `instrument`;
`MICRO_DEMO_INSTRUMENTS=GBPJPY,BTCUSD`: the synthetic demo market on those instruments),
`MICRO_GRANULARITY` and top-level TOML keys, overridden per service (`LIVE_INSTRUMENT`);
`CHECKPOINT_DIR` and `MICRO_DATA_DIR` name the volume and the store.

An unknown variable with a service's prefix or `MICRO_`, or an unknown TOML key, is a
ConfigError naming it and the closest known name; so is a bad value, with where it came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import to_jsonable_python

from shared.core.bar_sizes import parse_granularity
from shared.core.env_file import env_file_path, read_env_file
from shared.core.errors import StopError

PREFIXES = {"training": "TRAINING_", "validation": "VALIDATION_", "live": "LIVE_", "data": "DATA_"}
# fields every service shares: (variable read first, variable read after it, TOML top-level key)
SHARED_FIELDS = {
    "instrument": ("{prefix}INSTRUMENT", "MICRO_INSTRUMENT"),
    "instruments": ("{prefix}INSTRUMENTS", "MICRO_INSTRUMENTS"),
    "demo_instruments": ("MICRO_DEMO_INSTRUMENTS", None),
    "granularity": ("{prefix}GRANULARITY", "MICRO_GRANULARITY"),
    "data_dir": ("MICRO_DATA_DIR", None),
    "checkpoint_dir": ("CHECKPOINT_DIR", None),
}
# read elsewhere, not settings: known so that they are not reported as unknown
OTHER_VARIABLES = {
    "MICRO_CONFIG": "the TOML file",
    "MICRO_ENV_FILE": "the .env file (default ./.env)",
    "MICRO_DEVICE": "cpu, cuda, cuda:N or mps for every service (shared/model/networks.py)",
    "MICRO_INSTRUMENT_TABLE": "a TOML instrument table added to the built-in one (shared/core/instruments.toml)",
    "MICRO_DOCKER": "the container tests' docker command",
    "MICRO_TEST_IMAGE": "the container tests' image",
    "MICRO_TEST_DATA_DIR": "the container tests' data folder",
}
# names that changed when the stage configs became settings: the error says the new one
RENAMED = {
    "TRAINING_SIMULATIONS": "TRAINING_SEARCH__SIMULATIONS",
    "TRAINING_ROOT_SELECTION": "TRAINING_SEARCH__ROOT_SELECTION",
    "TRAINING_EPSILON": "TRAINING_EXPLORATION__EPSILON",
    "TRAINING_REWARD": "TRAINING_ENV__REWARD",
    "TRAINING_ACTION_SPACE": "TRAINING_ENV__ACTION_SPACE",
}
SOURCES = ("default", "file", ".env", "env", "cli", "derived")


class ConfigError(StopError, ValueError):
    """A setting that cannot be used: the message names the variable or key and the fix."""


def flatten(default_factory) -> Any:
    """A nested config whose fields take their parent's names (dataclass field)."""
    return field(default_factory=default_factory, metadata={"flatten": True})


def derived(default: Any, why: str) -> Any:
    """A value computed from other settings: shown, stored, never set (dataclass field)."""
    return field(default=default, metadata={"derived": why})


@dataclass(frozen=True)
class Knob:
    path: tuple[str, ...]           # attributes from the settings object down to the value
    name: str                       # public name: learner.learning_rate
    variables: tuple[str, ...]      # environment variables, the first found wins
    toml_keys: tuple[tuple[str, ...], ...]  # TOML key paths, the first found wins
    annotation: Any
    description: str = ""


def _nested_type(annotation: Any) -> type | None:
    """The dataclass or model a field holds, if it holds one."""
    if dataclasses.is_dataclass(annotation) or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return annotation
    return None


def _children(kind: type) -> list[tuple[str, Any, Mapping, str]]:
    """(name, annotation, metadata, description) of a dataclass's or model's fields."""
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return [(name, info.annotation, info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {},
                 info.description or "") for name, info in kind.model_fields.items()]
    hints = typing.get_type_hints(kind)
    return [(f.name, hints[f.name], f.metadata, "") for f in dataclasses.fields(kind)]


def _walk(kind: type, section: str, path: tuple[str, ...] = (), parts: tuple[str, ...] = (),
          derived_too: bool = False) -> list[Knob]:
    knobs = []
    for name, annotation, metadata, description in _children(kind):
        if metadata.get("derived") and not derived_too:
            continue
        nested = _nested_type(annotation)
        here = parts if metadata.get("flatten") else (*parts, name)
        if nested is not None:
            knobs += _walk(nested, section, (*path, name), here, derived_too)
            continue
        prefix = PREFIXES[section]
        if not path and name in SHARED_FIELDS:
            first, second = SHARED_FIELDS[name]
            variables = tuple(v.format(prefix=prefix) for v in (first, second) if v)
            toml_keys = ((section, name), (name,))
        else:
            variables = (prefix + "__".join(here).upper(),)
            toml_keys = ((section, *here),)
        knobs.append(Knob((*path, name), ".".join(here), variables, toml_keys, annotation, description))
    return knobs


def _lookup(tree: Mapping, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if not isinstance(tree, Mapping) or key not in tree:
            raise KeyError(keys)
        tree = tree[key]
    return tree


def _parse(text: str, annotation: Any) -> Any:
    """An environment string as the field's type wants it: JSON for lists, "" as None."""
    args = typing.get_args(annotation)
    if text == "" and type(None) in args:
        return None  # compose passes an unset ${VAR:-} as ""
    origin = typing.get_origin(annotation)
    if origin in (tuple, list, dict) or any(typing.get_origin(a) in (tuple, list, dict) for a in args):
        try:
            return json.loads(text if text.lstrip().startswith(("[", "{")) else f"[{text}]")
        except json.JSONDecodeError:
            return text  # pydantic says what is wrong with it
    return text


class Settings(BaseModel):
    """A service's settings; subclasses set `section` and their fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    section: ClassVar[str]
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("instrument", check_fields=False)
    @classmethod
    def one_instrument_spelling(cls, name: str) -> str:
        from shared.core.instruments import get_instrument

        return get_instrument(name).name  # GBP_JPY (OANDA's) and GBPJPY are one instrument

    @field_validator("instruments", "demo_instruments", mode="before", check_fields=False)
    @classmethod
    def instrument_list(cls, names) -> tuple[str, ...]:
        from shared.core.instruments import get_instrument

        if isinstance(names, str):  # MICRO_INSTRUMENTS=EURUSD,BTCUSD as a user writes it
            names = [name for name in names.replace(";", ",").split(",") if name.strip()]
        found = tuple(get_instrument(str(name).strip()).name for name in names)
        repeated = sorted({name for name in found if found.count(name) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} named twice")
        return found

    @model_validator(mode="after")
    def _first_of_instruments(self) -> "Settings":
        if getattr(self, "instruments", ()) and getattr(self, "demo_instruments", ()):
            raise ValueError("MICRO_DEMO_INSTRUMENTS runs the synthetic demo on its instruments, MICRO_INSTRUMENTS "
                             "trades your own market's: set one of them")
        # several instruments: `instrument` is the first (what one-instrument code paths and logs name)
        names = self.traded_instruments
        if "instrument" in type(self).model_fields and self.instrument != names[0]:
            object.__setattr__(self, "instrument", names[0])
        return self

    @property
    def traded_instruments(self) -> tuple[str, ...]:
        """The instruments this service works on: MICRO_INSTRUMENTS (or the demo's,
        MICRO_DEMO_INSTRUMENTS), else the one MICRO_INSTRUMENT."""
        return getattr(self, "instruments", ()) or getattr(self, "demo_instruments", ()) or (self.instrument,)

    @field_validator("granularity", check_fields=False)
    @classmethod
    def one_granularity_spelling(cls, name: str) -> str:
        return parse_granularity(name)  # 1h, 60min and H1 are one bar size, stored as H1

    @classmethod
    def knobs(cls, derived_too: bool = False) -> list[Knob]:
        return _walk(cls, cls.section, derived_too=derived_too)

    def effective(self) -> dict[str, dict[str, Any]]:
        """Every value in effect, derived ones too, with where it came from."""
        derived_names = {k.name for k in self.knobs(derived_too=True)} - {k.name for k in self.knobs()}
        result = {}
        for knob in self.knobs(derived_too=True):
            value: Any = self
            for attribute in knob.path:
                value = getattr(value, attribute)
            source = "derived" if knob.name in derived_names else self._sources.get(knob.name, "default")
            result[knob.name] = {"value": to_jsonable_python(value), "source": source}
        return result

    def sources(self) -> dict[str, str]:
        """The knobs not at their default, and where each was set."""
        return dict(self._sources)


def known_variables() -> set[str]:
    """Every variable some settings class reads (after services/*/config.py are imported)."""
    names = set(OTHER_VARIABLES)
    for cls in _settings_classes():
        names |= {v for k in cls.knobs() for v in k.variables}
    return names


def _settings_classes() -> list[type[Settings]]:
    found, todo = [], list(Settings.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if "section" in cls.__dict__:
            found.append(cls)
    return found


def _closest(name: str, candidates: set[str] | list[str]) -> str:
    """Every knob of that name in a stage (TRAINING_LEARNING_RATE: the learner's and the forecaster's),
    else the nearest name."""
    field = name.split("_", 1)[-1]
    same_field = sorted(c for c in candidates if c.rsplit("__", 1)[-1] == field and "__" in c)
    matches = same_field or difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean {' or '.join(matches)}?)" if matches else ""


def _check_variables(cls: type[Settings], variables: Mapping[str, str], where: str) -> None:
    own = {v for k in cls.knobs() for v in k.variables} | set(OTHER_VARIABLES)
    shared = {v for k in cls.knobs() for v in k.variables if v.startswith("MICRO_")}
    prefix = PREFIXES[cls.section]
    for name in sorted(variables):
        if name in own or not (name.startswith(prefix) or name.startswith("MICRO_")):
            continue
        if name.startswith("MICRO_") and name not in shared and name in known_variables():
            continue  # another service's shared variable
        if name in RENAMED:
            raise ConfigError(f"{name} (in {where}) is now {RENAMED[name]}")
        raise ConfigError(f"unknown setting {name} (in {where}){_closest(name, own)}; "
                          f"`micro config show {cls.section}` lists them all")


def _check_toml(cls: type[Settings], tree: Mapping, path: Path) -> None:
    knobs = cls.knobs()
    own_keys = {key for k in knobs for key in k.toml_keys}
    own_tables = {key[:i] for key in own_keys for i in range(1, len(key))}
    top_level = set(SHARED_FIELDS) | set(PREFIXES)

    def visit(node: Mapping, keys: tuple[str, ...]) -> None:
        for key, value in node.items():
            here = (*keys, key)
            if not keys and key not in top_level:
                raise ConfigError(f"{path}: unknown key {key!r}{_closest(key, top_level)}; "
                                  f"the top level holds {', '.join(sorted(top_level))}")
            if keys and keys[0] != cls.section or here in own_keys:
                continue  # another service's table: that service checks it
            if here in own_tables and isinstance(value, Mapping):
                visit(value, here)
            elif not keys:
                continue
            else:
                dotted = ".".join(here)
                raise ConfigError(f"{path}: unknown key {dotted}"
                                  f"{_closest(dotted, ['.'.join(k) for k in own_keys])}")

    visit(tree, ())


def _describe(error: ValidationError, cls: type[Settings], origin: dict[str, str]) -> str:
    """pydantic's errors with the variable (or key) and where it was set."""
    knobs = {k.path: k for k in cls.knobs()}
    lines = []
    for item in error.errors():
        location = tuple(str(part) for part in item["loc"] if not isinstance(part, int))
        message = item["msg"].removeprefix("Value error, ")
        knob = knobs.get(location)
        if knob is not None:
            lines.append(f"{origin.get(knob.name, knob.variables[0])}: {message}")
            continue
        # a check across a whole config (its __post_init__): name what was set inside it
        inside = [origin[k.name] for k in knobs.values() if k.path[:len(location)] == location and k.name in origin]
        lines.append(f"{'.'.join(location) or cls.section}: {message}" + (f" (set: {', '.join(inside)})" if inside else ""))
    return "\n".join(lines)


def load_settings(cls: type[Settings], environ: Mapping[str, str] | None = None,
                  cli: Mapping[str, str] | None = None) -> Settings:
    """The settings in effect for `cls`, or a ConfigError saying what to fix."""
    environ = dict(os.environ if environ is None else environ)
    env_path = env_file_path(environ)
    dotenv = read_env_file(env_path)
    _check_variables(cls, environ, "the environment")
    _check_variables(cls, dotenv, str(env_path))
    tree: dict = {}
    config_name = environ.get("MICRO_CONFIG") or dotenv.get("MICRO_CONFIG")
    if config_name:
        config_path = Path(config_name)
        if "MICRO_CONFIG" not in environ and not config_path.is_absolute():
            config_path = env_path.parent / config_path
        try:
            tree = tomllib.loads(config_path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"MICRO_CONFIG names {config_path}, which does not exist") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{config_path}: not TOML: {error}") from None
        _check_toml(cls, tree, config_path)
    cli = dict(cli or {})
    knobs = cls.knobs()
    by_name = {k.name: k for k in knobs} | {v: k for k in knobs for v in k.variables}
    for name in cli:
        if name not in by_name:
            raise ConfigError(f"unknown setting {name!r}{_closest(name, [k.name for k in knobs])}")

    raw: dict = {}
    sources: dict[str, str] = {}
    origin: dict[str, str] = {}
    for knob in knobs:
        found = _find(knob, cli, environ, dotenv, tree, by_name, env_path)
        if found is None:
            continue
        value, source, where = found
        node = raw
        for attribute in knob.path[:-1]:
            node = node.setdefault(attribute, {})
        node[knob.path[-1]] = value
        sources[knob.name] = source
        origin[knob.name] = where
    try:
        settings = cls.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"bad {cls.section} setting:\n{_describe(error, cls, origin)}") from None
    settings._sources.update(sources)
    return settings


def _find(knob: Knob, cli, environ, dotenv, tree, by_name, env_path) -> tuple[Any, str, str] | None:
    for name, value in cli.items():
        if by_name[name] is knob:
            return _parse(value, knob.annotation) if isinstance(value, str) else value, "cli", f"--set {name}"
    for variables, source, where in ((environ, "env", "the environment"), (dotenv, ".env", str(env_path))):
        for variable in knob.variables:
            if variable in variables:
                return _parse(variables[variable], knob.annotation), source, f"{variable} ({where})"
    for keys in knob.toml_keys:
        try:
            return _lookup(tree, keys), "file", f"{'.'.join(keys)} (MICRO_CONFIG)"
        except KeyError:
            continue
    return None


def leaf_schema(cls: type[Settings]) -> dict:
    """The JSON schema of one service's TOML table: its knobs by table."""
    from pydantic import TypeAdapter

    table: dict = {"type": "object", "additionalProperties": False, "properties": {}}
    for knob in cls.knobs():
        keys = knob.toml_keys[0][1:]
        node = table
        for key in keys[:-1]:
            node = node["properties"].setdefault(key, {"type": "object", "additionalProperties": False,
                                                       "properties": {}})
        schema = TypeAdapter(knob.annotation).json_schema()
        if knob.description:
            schema["description"] = knob.description
        node["properties"][keys[-1]] = schema
    return table
