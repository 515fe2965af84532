"""Node configuration: TOML with every key documented in configs/config.toml.

The documented file is also the source of the defaults, so documentation and behaviour
cannot drift apart. Loading checks every key and type and refuses unknown keys.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "configs" / "config.toml"


class ConfigError(Exception):
    """A config file that cannot be used; the message is one line naming file and key."""


_CHOICES = {
    ("node", "log_level"): ("debug", "info", "warning", "error"),
    ("node", "log_format"): ("text", "json"),
    ("storage", "backend"): ("leveldb", "memory"),
    ("storage", "compression"): ("none", "snappy"),
}
_ADDRESS_KEYS = {("rpc", "listen"), ("p2p", "listen")}


def default_config_text() -> str:
    return DEFAULT_CONFIG_PATH.read_text()


def _defaults() -> dict[str, dict[str, Any]]:
    return tomllib.loads(default_config_text())


def parse_host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    return host, int(port)


@dataclass(frozen=True, slots=True)
class Config:
    sections: dict[str, dict[str, Any]]

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.sections[section]

    def get(self, section: str, key: str) -> Any:
        return self.sections[section][key]


def _check_value(where: str, section: str, key: str, value: Any, default: Any) -> Any:
    expected = type(default)
    if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: [{section}] {key}: expected an integer, got {value!r}")
    if expected is not int and not isinstance(value, expected):
        raise ConfigError(
            f"{where}: [{section}] {key}: expected {expected.__name__}, got {value!r}"
        )
    if expected is int and value < 0:
        raise ConfigError(f"{where}: [{section}] {key}: must not be negative")
    if isinstance(value, list) and not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: [{section}] {key}: expected a list of strings")
    choices = _CHOICES.get((section, key))
    if choices and value not in choices:
        raise ConfigError(f"{where}: [{section}] {key}: must be one of {', '.join(choices)}")
    if (section, key) in _ADDRESS_KEYS:
        try:
            parse_host_port(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: [{section}] {key}: {exc}") from None
    return value


# Keys that were renamed: a home written before still loads, read under the new name.
RENAMED_KEYS = {("node", "verify_threads"): "verify_workers"}


def _renamed(data: dict[str, Any], where: str) -> dict[str, Any]:
    data = {section: dict(keys) if isinstance(keys, dict) else keys
            for section, keys in data.items()}
    for (section, old), new in RENAMED_KEYS.items():
        keys = data.get(section)
        if isinstance(keys, dict) and old in keys:
            if new in keys:
                raise ConfigError(f"{where}: [{section}] has both {old!r} and its new name {new!r}")
            keys[new] = keys.pop(old)
    return data


def config_from_dict(data: dict[str, Any], where: str = "config") -> Config:
    defaults = _defaults()
    data = _renamed(data, where)
    sections: dict[str, dict[str, Any]] = {}
    for section, keys in data.items():
        if section not in defaults:
            raise ConfigError(f"{where}: unknown section [{section}]")
        if not isinstance(keys, dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        for key in keys:
            if key not in defaults[section]:
                raise ConfigError(f"{where}: [{section}] unknown key {key!r}")
    for section, keys in defaults.items():
        given = data.get(section, {})
        sections[section] = {
            key: _check_value(where, section, key, given.get(key, default), default)
            for key, default in keys.items()
        }
    return Config(sections)


def load_config(path: Path) -> Config:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: the file is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return config_from_dict(data, str(path))


def render_config(overrides: dict[tuple[str, str], Any]) -> str:
    """The documented default file with some values replaced, keeping every comment."""
    lines = default_config_text().splitlines()
    section = ""
    out = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1]
        elif "=" in stripped and not stripped.startswith("#"):
            key = stripped.split("=", 1)[0].strip()
            if (section, key) in overrides:
                line = f"{key} = {_toml_value(overrides[(section, key)])}"
        out.append(line)
    text = "\n".join(out) + "\n"
    config_from_dict(tomllib.loads(text), "rendered config")  # never write an invalid file
    return text


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot render {value!r}")
