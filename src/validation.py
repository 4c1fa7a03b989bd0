"""How a parameter value is checked: the error types and the checks `src/params.py` composes.

A check takes a typed value (what YAML gives, or what `src/argv.py` made of a command-line
token) and returns it normalised, or raises `ValueProblem` saying what is allowed; the
caller adds the place (the option, or the YAML file and key). Bounds and allowed names are
not written here but in `src/params.py`'s field table and in the RL config schema.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple, Union

import numpy as np

Check = Callable[[Any], Any]


class ValueProblem(ValueError):
    """What is wrong with a value, without its place.

    `allowed` is what the command line prints after the value; `str()` also says what was given.
    """

    def __init__(self, allowed: str, got: Optional[str] = None, detail: Optional[str] = None) -> None:
        super().__init__(detail or (allowed if got is None else f"{allowed}, {got}"))
        self.allowed = allowed


class ParameterError(ValueError):
    """A user-caused bad value: the message is one line naming option, value and what is allowed.

    `field` names the parameter when one value is at fault, so a YAML config can name its key;
    `problem` is the message without the option.
    """

    def __init__(self, message: str, field: Optional[str] = None, problem: Optional[str] = None) -> None:
        super().__init__(message)
        self.field = field
        self.problem = problem or message


def invalid_value(option: str, value: object, allowed: str, field: Optional[str] = None) -> ParameterError:
    return ParameterError(f"{option}: invalid value {value!r}; {allowed}", field, allowed)


def type_name(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "mapping",
            type(None): "null"}.get(type(value), type(value).__name__)


def got(value: Any) -> str:
    return f"got {type_name(value)} {value!r}"


def suggest(word: Any, candidates: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for a close candidate, else ''."""
    close = difflib.get_close_matches(str(word), list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def integer(low: Optional[int] = None, high: Optional[int] = None, optional: bool = False,
            whole_floats: bool = False) -> Check:
    """An int (not a bool, not a str) in [low, high]; with `whole_floats` also a float like 300.0."""
    if low is not None and high is not None:
        allowed = f"expected an integer {low}-{high}"
    else:
        allowed = "expected an integer" + (f" >= {low}" if low is not None else "")

    def check(value: Any) -> Optional[int]:
        if value is None and optional:
            return None
        if whole_floats and is_number(value) and float(value).is_integer():
            value = int(value)
        if not is_int(value):
            raise ValueProblem(allowed, got(value))
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueProblem(allowed, f"got {value}")
        return int(value)

    return check


def number(low: Optional[float] = None, high: Optional[float] = None, low_open: bool = False,
           high_open: bool = False) -> Check:
    """A finite int or float in the given range, returned as a float."""
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    allowed = "expected a number" + (f" {' and '.join(parts)}" if parts else "")

    def check(value: Any) -> float:
        if not is_number(value):
            raise ValueProblem(allowed, got(value))
        x = float(value)
        if not math.isfinite(x) or (low is not None and (x <= low if low_open else x < low)) or \
                (high is not None and (x >= high if high_open else x > high)):
            raise ValueProblem(allowed, f"got {value!r}")
        return x

    return check


def choice(allowed_values: Iterable[str], optional: bool = False) -> Check:
    allowed_values = tuple(allowed_values)
    allowed = f"allowed: {', '.join(allowed_values)}"

    def check(value: Any) -> Optional[str]:
        if value is None and optional:
            return None
        if not isinstance(value, str) or value not in allowed_values:
            hint = suggest(value, allowed_values) if isinstance(value, str) else ""
            raise ValueProblem(allowed, detail=f"{got(value)}{hint}; {allowed}")
        return value

    return check


def text(optional: bool = False, what: str = "a non-empty string", pattern: Optional[str] = None) -> Check:
    def check(value: Any) -> Optional[str]:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ValueProblem(f"expected {what}{' or null' if optional else ''}", got(value))
        if pattern is not None and not re.fullmatch(pattern, value):
            raise ValueProblem(f"expected {what}", f"got {value!r}")
        return value

    return check


def path(must_exist: bool = False) -> Check:
    """An optional path (str or Path) -> Path; `must_exist`: an existing file."""

    def check(value: Any) -> Optional[Path]:
        if value is None:
            return None
        if not isinstance(value, (str, Path)) or not str(value).strip():
            raise ValueProblem("expected a file path", got(value))
        if must_exist and not Path(value).is_file():
            raise ValueProblem(f"file {str(value)!r} does not exist")
        return Path(value)

    return check


def flag(value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueProblem("expected true or false", got(value))
    return bool(value)


def from_parser(parse: Callable[[Any], Any], expected: str, accepts: Tuple[type, ...] = (str,)) -> Check:
    """A check for a value with a text form (a mix, a junction list): the parser's error as a ValueProblem."""

    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, accepts):
            raise ValueProblem(f"expected {expected}", got(value))
        try:
            return parse(value)
        except ParameterError as err:
            raise ValueProblem(err.problem, f"got {value!r}") from None

    return check


def parse_percentage_mix(text: str, option: str, allowed: Tuple[str, ...]) -> Dict[str, float]:
    """Parse "name pct name pct ..." into {name: pct}; the shares must sum to 100."""
    tokens = str(text).replace(",", " ").split()
    if not tokens or len(tokens) % 2:
        raise invalid_value(option, text, f"expected pairs 'NAME PERCENT', names from {', '.join(allowed)}")
    names = tokens[::2]
    twice = [name for name in names if names.count(name) > 1]
    if twice:
        raise invalid_value(option, text, f"{twice[0]!r} given twice")
    return check_mix(dict(zip(names, tokens[1::2])), option, allowed, text)


def check_mix(mix: Mapping[Any, Any], option: str, allowed: Tuple[str, ...], shown: Any = None) -> Dict[str, float]:
    """Names from `allowed`, percentages >= 0 summing to 100."""
    shown = dict(mix) if shown is None else shown
    if not mix:
        raise invalid_value(option, shown, f"expected a mix of {', '.join(allowed)} summing to 100")
    result: Dict[str, float] = {}
    for name, pct in mix.items():
        if name not in allowed:
            raise invalid_value(option, shown, f"unknown name {name!r}; allowed: {', '.join(allowed)}")
        try:
            result[name] = float(pct)
        except (TypeError, ValueError):
            raise invalid_value(option, shown, f"percentage {pct!r} is not a number") from None
        if not math.isfinite(result[name]) or result[name] < 0:
            raise invalid_value(option, shown, "percentages must be numbers >= 0")
    total = sum(result.values())
    if abs(total - 100.0) > 1e-6:
        raise invalid_value(option, shown, f"percentages sum to {total:g}, they must sum to 100")
    return result


def mix(option: str, allowed: Tuple[str, ...]) -> Check:
    """A percentage mix given as text ("shortest 70 realtime 30") or a mapping -> a mapping."""
    expected = f"a string of 'NAME PERCENT' pairs summing to 100 (names: {', '.join(allowed)})"
    text_form = from_parser(lambda t: parse_percentage_mix(t, option, allowed), expected)

    def check(value: Any) -> Dict[str, float]:
        if isinstance(value, Mapping):
            try:
                return check_mix(value, option, allowed)
            except ParameterError as err:
                raise ValueProblem(err.problem) from None
        return text_form(value)

    return check


JUNCTIONS_EXPECTED = "a count >= 0 or a comma list of junction IDs like 'B1,C2'"


def parse_junctions_to_remove(text: Union[str, int, Tuple[str, ...]]) -> Union[int, Tuple[str, ...]]:
    """A count (removed at random) or a comma list (or tuple) of junction IDs."""
    if isinstance(text, (tuple, list)):
        text = ",".join(str(part) for part in text)
    value = str(text).strip()
    if re.fullmatch(r"\d+", value):
        return int(value)
    ids = tuple(part.strip() for part in value.split(",") if part.strip())
    if re.fullmatch(r"-\d+", value) or not ids:
        raise invalid_value("--junctions_to_remove", text, f"expected {JUNCTIONS_EXPECTED}")
    return ids
