"""How experiment YAML is read and written: `1e-4` is a float, a key given twice is an error,
lists of plain values stay on one line.

PyYAML follows YAML 1.1, which reads `1e-4` (no dot) as a string; configs write learning
rates that way, so the float pattern is widened for both reading and writing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Union

import yaml

from src.rl.config.schema import ConfigError
from src.validation import type_name

_FLOAT_RE = re.compile(r"^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_FLOAT_FIRST = list("-+0123456789.")


class _Loader(yaml.SafeLoader):
    pass


class _Dumper(yaml.SafeDumper):
    pass


for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, _FLOAT_FIRST)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> Dict[Any, Any]:
    loader.flatten_mapping(node)
    result: Dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in result:
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice", key_node.start_mark)
        result[key] = loader.construct_object(value_node, deep=deep)
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _represent_list(dumper: _Dumper, data: list) -> yaml.SequenceNode:
    """Lists of plain values on one line ([256, 256]), lists of mappings as blocks."""
    flow = all(not isinstance(item, (list, dict)) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def read_mapping(path: Union[str, Path], what: str) -> Dict[str, Any]:
    """The mapping in a YAML file (an empty file is an empty mapping); ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        detail = "is a directory" if path.is_dir() else "does not exist"
        raise ConfigError(f"{what} file {path} {detail}; give the path of a YAML file")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read {what} file: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a {what} file must be a mapping of keys to values, not a {type_name(data)}")
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(f"{path}: key {key!r} is not a name; keys are strings like 'learning_rate'")
    return data


def dump_mapping(values: Dict[str, Any]) -> str:
    """`values` as block YAML that `read_mapping` reads back equal."""
    return yaml.dump(values, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)
