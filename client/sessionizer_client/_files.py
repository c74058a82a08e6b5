"""Files written whole or not at all: the sessions a client or the command line saves."""

from __future__ import annotations

import os
from typing import BinaryIO


class atomic_file:
    """Write to ``path + '.part'``, renamed to ``path`` only once complete (no half file on error)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.part = self.path + ".part"

    def __enter__(self) -> BinaryIO:
        self.fh = open(self.part, "wb")
        return self.fh

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.fh.close()
        if exc_type is None:
            os.replace(self.part, self.path)
        else:
            os.unlink(self.part)
