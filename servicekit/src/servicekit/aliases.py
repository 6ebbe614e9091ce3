"""The predecessor's names of our settings, accepted so that an operator's `.env` written
for it starts our services unchanged. Our own name wins when both are set; each alias in
use is named in a log line at start-up."""

from __future__ import annotations

import re
from collections.abc import Mapping

_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration_seconds(text: str) -> float:
    """Seconds in a Go duration such as `10s`, `1.5s`, `500ms` or `1m30s` (the predecessor's
    orders service was written in Go); a bare number is taken as seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    if not text or _GO_DURATION.sub("", text):
        raise ValueError(f"{text!r} is not a duration like 10s, 500ms or 1m30s")
    return sum(float(n) * _SECONDS[unit] for n, unit in _GO_DURATION.findall(text))


def go_bool(text: str) -> bool:
    """A boolean as Go's `strconv.ParseBool` reads it (`1`, `t`, `true`, `0`, `f`, `FALSE`, ...)."""
    lowered = text.strip().lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise ValueError(f"{text!r} is not a boolean like true or false")


def aliases_in_use(environ: Mapping[str, str], aliases: Mapping[str, str]) -> list[str]:
    """One sentence per predecessor name set in `environ` (`aliases`: its name -> ours)."""
    notes = []
    for alias, ours in aliases.items():
        if not environ.get(alias):
            continue
        if environ.get(ours):
            notes.append(f"{alias} (the predecessor's name) is ignored: {ours} is set and wins")
        else:
            notes.append(f"{alias} (the predecessor's name) is used as {ours}")
    return notes
