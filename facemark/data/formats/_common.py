"""Small helpers every reader shares: scheme look-up and option parsing."""
from __future__ import annotations

from facemark.data.schemes import LandmarkScheme, get_scheme
from facemark.errors import ConfigError


def lookup_scheme(name: str | LandmarkScheme | None, default: str | None = None) -> LandmarkScheme | None:
    """The scheme called ``name`` (or ``default``), None when both are None.

    An unknown name raises ConfigError listing the known schemes (never a KeyError traceback).
    """
    name = name or default
    if name is None:
        return None
    try:
        return get_scheme(name)
    except KeyError as e:
        raise ConfigError(f"scheme: {e.args[0]}") from None


def bool_option(name: str, value) -> bool:
    """Options may come from a dataset string (``"x.json?one_based=true"``) as text."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: expected true or false, got {value!r}")
