"""Reading a YAML config file so that errors name the file, line and key and never quote a value.

Every config reader (``pipeline.ops.settings``, ``pipeline.forward.config``) goes through
:func:`read_file`; a value under a key that looks like it holds a credential (:data:`SECRET_WORDS`) is
masked in any message that could echo it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipeline.errors import ConfigError

SECRET_WORDS = ("token", "secret", "password", "passwd", "key", "url", "auth", "credential", "header", "webhook")


def read_file(path: str | Path) -> tuple[dict, Any]:
    """(data, composed YAML node for line numbers) of a config file; errors never quote its text."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found: check --config or SOCLAKE_CONFIG") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder: pass the YAML file (--config or SOCLAKE_CONFIG)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {getattr(e, 'strerror', None) or type(e).__name__}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:  # its str() quotes the offending line, which may hold a secret
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', None) or type(e).__name__}") from None
    if data is None:
        raise ConfigError(f"config file {path} is empty: it needs settings such as `lake:` or a `sinks:` list "
                          "(see deploy/soclake.example.yml)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the config file must be a mapping of settings (see deploy/soclake.example.yml)")
    return data, root


def secret_values(data: Any, secret: bool = False) -> list[str]:
    """Every string under a key that looks like it holds a credential (longest first)."""
    out: list[str] = []
    if isinstance(data, dict):
        for k, v in data.items():
            out += secret_values(v, secret or any(w in str(k).lower() for w in SECRET_WORDS))
    elif isinstance(data, list):
        for v in data:
            out += secret_values(v, secret)
    elif secret and isinstance(data, str | int) and len(str(data)) >= 4:
        out.append(str(data))
    return sorted(set(out), key=len, reverse=True)


def mask(text: str, secrets: list[str]) -> str:
    for value in secrets:
        text = text.replace(value, "***")
    return text


def _child(node, part):
    """(key node or None, value node) of ``part`` under a composed YAML node, or None."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key, value
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return None, node.value[part]
    return None


def resolve(root, loc: tuple) -> tuple[list, int | None]:
    """The leading parts of ``loc`` found in the file, and the line of the deepest one."""
    found, node, line = [], root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        hit = _child(node, part)
        if hit is None:
            break
        key, node = hit
        found.append(part)
        line = (key or node).start_mark.line + 1
    return found, line


def line_of(root, loc: tuple) -> int | None:
    return resolve(root, loc)[1]


def _dotted(parts) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


def problems(e: ValidationError, path: Path, root, base: tuple, secrets: list[str], label: str = "") -> str:
    """pydantic's errors as ``file:line: key: message``, joined on one line; never an input value."""
    out = []
    for err in e.errors(include_url=False, include_input=False, include_context=False):
        loc = base + tuple(err["loc"])
        found, line = resolve(root, loc)
        if err["type"] == "missing" and len(found) < len(loc):
            found.append(loc[-1])
        where = _dotted(found) or "(top level)"
        msg = mask(err["msg"].removeprefix("Value error, "), secrets)
        out.append(f"{path}:{line}: {where}{label if found[:2] == list(base) and base else ''}: {msg}")
    return "; ".join(dict.fromkeys(out))
