"""Bundled experiment configs (YAML), found through importlib.resources.

Names are paths below this package without ``.yaml``, e.g. ``300w/pipnet_r18``.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from facemark.errors import ConfigError


def bundled_config_names() -> list[str]:
    root = resources.files("facemark.configs")
    names = []

    def walk(node, prefix):
        for child in node.iterdir():
            if child.is_dir() and not child.name.startswith("_"):
                walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".yaml"):
                names.append(prefix + child.name[:-5])

    walk(root, "")
    return sorted(names)


def resolve_config(name_or_path: str) -> Path:
    """A YAML path as given, or the bundled config of that name."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    names = bundled_config_names()
    if name_or_path in names:
        return Path(str(resources.files("facemark.configs").joinpath(name_or_path + ".yaml")))
    import difflib

    close = difflib.get_close_matches(name_or_path, names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see facemark train --list-configs"
    raise ConfigError(f"config {name_or_path!r} is neither a file nor a bundled config{hint}")
