"""Typed settings from plain dicts (exec properties, configs): unknown keys are refused by name."""

from __future__ import annotations

import dataclasses


def given(**values) -> dict:
    """The settings a flag or config key set: None means "not given", so the settings
    class's own default applies and no caller decides it again."""
    return {name: value for name, value in values.items() if value is not None}


def known_fields(cls: type, data: dict, what: str) -> dict:
    """`data` checked against the dataclass `cls`'s fields.

    A misspelt key would otherwise become the field's default without a word;
    here it is a ValueError that names it and lists the keys `what` takes.
    """
    names = [field.name for field in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(
            f"{what}: unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(names)}"
        )
    return dict(data)
