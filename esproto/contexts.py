"""Search contexts: point in time and scroll."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .index import _Index, _Snapshot


@dataclass
class _Pit:
    num: int
    index: _Index
    snap: _Snapshot
    keep_alive_s: float
    expires_at: float
    generation: int = 0
    pages: int = 0
    expire_after_pages: int | None = None


@dataclass
class _Scroll:
    num: int
    index: _Index
    slots: np.ndarray
    keys: list[np.ndarray]
    pos: int
    size: int
    body: dict
    keep_alive_s: float
    expires_at: float
    cache_key: Any
