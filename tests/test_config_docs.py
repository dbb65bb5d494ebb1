"""The configuration's documentation cannot drift from the models: every key has a
description, and configs/default.toml and the README's configuration table list it (the
file at its real default)."""

from __future__ import annotations

import re
import tomllib

from pydantic import BaseModel

from stream_gate.config import Settings, StreamConfig

from .conftest import ROOT

SECTIONS: dict[str, type[BaseModel]] = {
    name: field.annotation for name, field in Settings.model_fields.items()  # type: ignore[misc]
    if name != "streams"
}


def _toml_keys(section: str) -> set[str]:
    """Keys of ``[section]`` in default.toml, set or shown commented out (``# key = …``)."""
    text = (ROOT / "configs" / "default.toml").read_text()
    body = re.split(r"^\[", text, flags=re.M)
    part = next(b for b in body if b.startswith(f"{section}]"))
    return set(re.findall(r"^#? ?(\w+) = ", part, flags=re.M))


def _readme_row(section: str) -> str:
    rows = [ln for ln in (ROOT / "README.md").read_text().splitlines()
            if ln.startswith(f"| `{section}` |")]
    assert len(rows) == 1, f"README: no configuration row for {section}"
    return rows[0]


def test_every_key_has_a_description() -> None:
    missing = [f"{section}.{key}" for section, model in [*SECTIONS.items(),
                                                          ("streams", StreamConfig)]
               for key, field in model.model_fields.items() if not field.description]
    assert not missing, missing


def test_default_toml_lists_every_key_at_its_default() -> None:
    data = tomllib.loads((ROOT / "configs" / "default.toml").read_text())
    missing: list[str] = []
    wrong: list[str] = []
    for section, model in SECTIONS.items():
        keys = _toml_keys(section)
        missing += [f"{section}.{k}" for k in model.model_fields if k not in keys]
        defaults = model().model_dump(mode="json")
        for key, value in data.get(section, {}).items():
            if defaults.get(key) != (str(value) if isinstance(defaults.get(key), str) else value):
                wrong.append(f"{section}.{key}: file {value!r}, model {defaults.get(key)!r}")
    assert not missing, f"configs/default.toml lacks {missing}"
    assert not wrong, wrong


def test_readme_table_lists_every_key() -> None:
    missing = [f"{section}.{key}" for section, model in SECTIONS.items()
               for key in model.model_fields if f"`{key}`" not in _readme_row(f"[{section}]")]
    missing += [f"streams.{key}" for key in StreamConfig.model_fields
                if key not in ("score", "select") and f"`{key}`" not in _readme_row("[[streams]]")]
    assert not missing, f"README configuration table lacks {missing}"

