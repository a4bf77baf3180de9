"""Stage descriptions (OpenLTH's ``desc``): one frozen dataclass per stage kind, whose fields are
everything that shaped the stage. The stage's folder is ``<name>-<hash of the fields>``, hashed
here and nowhere else. A field holding a parent's description nests the parent's fields, so a
stage's key covers its whole lineage; a field marked ``KEYLESS`` names the stage but is not hashed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any

KEYLESS = {"hashed": False}  # field metadata: part of the name, not of the key


def settings_hash(settings: dict[str, Any]) -> str:
    """12 hex digits of the sha256 of the settings as canonical JSON (keys sorted)."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


@dataclass(frozen=True)
class Desc:
    """Base of the stage descriptions: subclasses add their fields and ``name``."""

    @property
    def name(self) -> str:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """The hashed fields as plain data (what ``settings.json`` of the stage records)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.metadata.get("hashed", True)}

    def hash(self) -> str:
        return settings_hash(self.settings())

    def folder(self) -> str:
        return f"{self.name}-{self.hash()}"


def _plain(value: Any) -> Any:
    return value.settings() if isinstance(value, Desc) else value


def keyless(default: Any = None) -> Any:
    """A field that names the stage without keying it."""
    return field(default=default, metadata=KEYLESS)
