"""Config fields declared once: what values each field of a dataclass config takes, and its CLI
option, live in the field's metadata; `check_fields` checks them all.

    from seqgen.config import setting

    @dataclass
    class SampleConfig:
        top_p: float = setting(1.0, gt=0, le=1, note="1 = off")

`check_fields(SampleConfig(top_p=2.0))` raises the UsageError "top_p must be in (0, 1] (1 = off),
not 2.0", which names the field (seqgen/errors.py); the CLI shows it as `flag_of(SampleConfig,
"top_p")`, "--top-p must be in (0, 1] (1 = off), not 2.0". A field's type is its annotation
(`wrong_type`). What depends on several fields stays in the config's `validate`, after
`check_fields`.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass
from typing import Any

from seqgen.errors import UsageError

KEY = "seqgen"  # the key of a Rule in a field's metadata


@dataclass(frozen=True)
class Rule:
    """The values a field takes beyond its annotated type (None always passes: "not given"), and
    its option on the command line."""

    flag: str | None = ""  # "": --name-with-dashes; None: no option (a library setting)
    choices: tuple[str, ...] | None = None
    gt: float | None = None  # value > gt
    ge: float | None = None  # value >= ge
    lt: float | None = None  # value < lt
    le: float | None = None  # value <= le
    finite: bool = False  # no inf (NaN fails every bound)
    unit: str = ""  # after the bounds in a message: ">= 10 characters"
    note: str = ""  # in parentheses after them: "(0 = off)"
    text: str | None = None  # the rule as the message says it, where bounds would read otherwise
    value: bool = True  # the message ends with ", not VALUE"
    link: str = " must be "  # between the field and the rule's words (": " for a check's sentence)
    check: Callable[[Any], str | None] | None = None  # a rule no bound says: its text, when broken

    def phrase(self) -> str:
        """What a value must be: "one of a, b", "> 0", "in [0, 1)", with unit and note."""
        if self.text is not None:
            words = self.text
        elif self.choices is not None:
            words = "one of " + ", ".join(self.choices)
        else:
            low = ("(", self.gt) if self.gt is not None else ("[", self.ge)
            high = (")", self.lt) if self.lt is not None else ("]", self.le)
            if low[1] is not None and high[1] is not None:
                words = f"in {low[0]}{low[1]:g}, {high[1]:g}{high[0]}"
            elif low[1] is not None:
                words = f"{'>' if low[0] == '(' else '>='} {low[1]:g}"
            else:
                words = f"{'<' if high[0] == ')' else '<='} {high[1]:g}"
        return words + (f" {self.unit}" if self.unit else "") + (
            f" ({self.note})" if self.note else "")

    def broken(self, value: Any) -> str | None:
        """What `value` must be instead (the message's words), or None when it keeps the rule."""
        if self.check is not None:
            return self.check(value)
        if self.choices is not None:
            return None if value in self.choices else self.phrase()
        bounds = (self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge) \
            and (self.lt is None or value < self.lt) and (self.le is None or value <= self.le)
        if not bounds or (self.finite and not math.isfinite(value)):
            return self.phrase()
        return None


def setting(default: Any = MISSING, *, default_factory: Any = MISSING, **rule: Any) -> Any:
    """A dataclass field with its Rule (the keywords of Rule) in its metadata."""
    return field(default=default, default_factory=default_factory,
                 metadata={KEY: Rule(**rule)})


def like(config: type, name: str, default: Any = MISSING) -> Any:
    """A field with the Rule of field `name` of the dataclass `config`, and its own default (a
    TrainConfig field that is a ModelConfig field, None meaning "from the preset")."""
    return field(default=default, metadata={KEY: rule_of(_field(config, name))})


def rule_of(f: Field) -> Rule:
    return f.metadata.get(KEY, Rule())


def _field(config: Any, name: str) -> Field:
    for f in fields(config):
        if f.name == name:
            return f
    raise KeyError(f"{config.__name__} has no field {name!r}")


def flag_of(config: type | None, name: str) -> str:
    """The CLI option of field `name` of the dataclass `config` as declared (``kind`` ->
    ``--model``), else ``--name-with-dashes`` (also for the parameters of a function: `config`
    None); the bare name for a field that has no option."""
    if config is not None and is_dataclass(config) and name in {f.name for f in fields(config)}:
        flag = rule_of(_field(config, name)).flag
        if flag is None:
            return name
        if flag:
            return flag
    return "--" + name.replace("_", "-")


def check_fields(config: Any) -> None:
    """UsageError naming the first field of the dataclass `config` whose value has the wrong type
    (all fields first), else the first that breaks its Rule."""
    check_types(config)
    for f in fields(config):
        value = getattr(config, f.name)
        if value is not None:
            check_value(f.name, value, rule_of(f), type(config))


def check_value(name: str, value: Any, rule: Rule, config: type | None = None) -> None:
    """UsageError naming `name` unless `value` keeps `rule` (also for a function's parameter)."""
    must = rule.broken(value)
    if must is not None:
        shown = repr(value) if isinstance(value, str) else str(value)
        raise UsageError(f"`{name}`{rule.link}{must}" + (f", not {shown}" if rule.value else ""),
                         config=config, params=True)


# ------------------------------------------------------------------------------------ types
_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,),
          "None": (type(None),)}


def plain_values(config: Any) -> None:
    """Turn the values of the dataclass `config` into what JSON holds and the checks expect: a
    path (os.PathLike) into str, a numpy or other integral number into int, a real one into
    float. Called by every config's __post_init__."""
    for f in fields(config):
        v = getattr(config, f.name)
        if isinstance(v, os.PathLike):
            setattr(config, f.name, os.fspath(v))
        elif isinstance(v, numbers.Integral) and not isinstance(v, int):
            setattr(config, f.name, int(v))
        elif isinstance(v, numbers.Real) and not isinstance(v, (int, float)):
            setattr(config, f.name, float(v))


def wrong_type(config: Any) -> tuple[str, str, str] | None:
    """(field, annotated type, type found) for the first field of the dataclass `config` whose
    value does not have its annotated type ("int | None", "tuple[str, ...]"; a bool is no int
    or float here), else None."""
    for f in fields(config):
        value = getattr(config, f.name)
        allowed: list[type] = []
        for part in str(f.type).split("|"):
            part = part.strip()
            allowed.extend((tuple,) if part.startswith("tuple") else _TYPES.get(part, (object,)))
        if not isinstance(value, tuple(allowed)) or (isinstance(value, bool)
                                                     and bool not in allowed):
            return f.name, str(f.type), type(value).__name__
    return None


def check_types(config: Any) -> None:
    """UsageError naming the first field of `config` of the wrong type (a library caller's
    `hidden_size="512"` would otherwise fail deep inside torch)."""
    bad = wrong_type(config)
    if bad is not None:
        name, want, found = bad
        raise UsageError(f"`{name}` must be {want}, not {found}", config=type(config))
