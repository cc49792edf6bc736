"""Reading a TOML settings file, with every failure as a ConfigError naming the file."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from streamproc.errors import ConfigError


def read_toml(path: str | Path, *, key: str = "--config") -> dict[str, Any]:
    """The parsed document; a missing, unreadable or invalid file is a ConfigError under
    ``key`` (the flag or setting that named the file)."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(key, f"file not found: {str(file)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(key, f"cannot read {str(file)!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        # TOML is UTF-8; the reason and the position, never the bytes (they may be a secret).
        raise ConfigError(
            key, f"{str(file)!r} is not UTF-8 text: {exc.reason} at byte {exc.start}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(key, f"{str(file)!r} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(key, f"{str(file)!r} nests arrays or tables too deeply") from None
