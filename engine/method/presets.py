"""Presets: named run configs that the Setup page offers and ``python -m engine run --preset NAME`` takes.

They live in ``assets/presets.json`` (the project's own settings file, not
data): ``{"default": ID, "presets": [{"id", "name", "description", "config"}]}``,
each ``config`` a partial :class:`~engine.method.config.RunConfig` (what it
leaves out keeps the defaults). This module is the file's one reader.

A preset answers to its id (``moons-30``) and to the id's first word
(``moons``) when no other preset's id starts with that word.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError, shown
from .config import RunConfig

PRESETS_PATH = Path(__file__).resolve().parents[2] / "assets" / "presets.json"


@dataclass(frozen=True)
class Preset:
    id: str
    name: str
    description: str
    config: RunConfig

    @property
    def short(self) -> str:
        """The id's first word: ``moons`` for ``moons-30``."""
        return self.id.split("-", 1)[0]


def load_presets(path: Path = PRESETS_PATH) -> tuple[list[Preset], str]:
    """The presets of ``assets/presets.json`` and the id of the default one.

    Raises
    ------
    UserError
        The file is missing, not JSON, or a preset's config is not valid (naming the preset).
    """
    try:
        data = json.loads(Path(path).read_text())
        entries, default_id = data["presets"], data["default"]
        presets = []
        for entry in entries:
            try:
                presets.append(Preset(entry["id"], entry["name"], entry["description"],
                                      RunConfig.from_dict(entry["config"])))
            except UserError as exc:
                raise UserError(f"preset {entry['id']!r} of {str(path)!r}: {exc}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(f"presets file {str(path)!r} cannot be read ({type(exc).__name__}: {exc}); valid: "
                        '{"default": ID, "presets": [{"id", "name", "description", "config"}, ...]}') from None
    ids = [p.id for p in presets]
    if default_id not in ids:
        raise UserError(f"default preset {default_id!r} of {str(path)!r} is not one of {ids}")
    return presets, default_id


def default_preset() -> Preset:
    """The preset the app opens on."""
    presets, default_id = load_presets()
    return next(p for p in presets if p.id == default_id)


def preset_names(presets: list[Preset]) -> dict[str, Preset]:
    """Every name a preset answers to: its id, and its id's first word where no other preset shares it."""
    names = {p.id: p for p in presets}
    for p in presets:
        if p.short not in names and sum(q.short == p.short for q in presets) == 1:
            names[p.short] = p
    return names


def preset_named(name: str) -> Preset:
    """The preset called ``name`` (an id or its first word).

    Raises
    ------
    UserError
        One line listing the valid names.
    """
    presets, _ = load_presets()
    names = preset_names(presets)
    if name in names:
        return names[name]
    valid = ", ".join(p.short if names.get(p.short) is p else p.id for p in presets)
    ids = ", ".join(p.id for p in presets)
    raise UserError(f"--preset {shown(name, 60)} is not a preset; valid: {valid} (ids: {ids})")
