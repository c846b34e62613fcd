"""One small registry shape for everything advtf looks up by name: datasets, models, attacks,
CAM methods and jobs. ``get`` of an unknown name is a one-line UserError with a "did you mean"."""

from __future__ import annotations

import difflib
import fnmatch
from typing import Callable, Generic, Iterator, TypeVar

from advtf.errors import UserError

T = TypeVar("T")
_DECORATE = object()  # register(name) without an entry: used as a decorator (None is a valid entry)


class Registry(Generic[T]):
    """Named entries of one kind, in registration order.

    Args:
        kind: what the entries are, for messages ("dataset", "attack", ...).
        hint: where a user finds the names ("see `advtf attacks`").
    """

    def __init__(self, kind: str, hint: str = ""):
        self.kind, self.hint = kind, hint
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T = _DECORATE) -> Callable[[T], T] | T:
        """Adds ``entry`` under ``name`` (or, without ``entry``, returns a decorator that does)."""
        def add(item: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = item
            return item

        return add if entry is _DECORATE else add(entry)

    def get(self, name: str) -> T:
        """The entry of ``name``; UserError naming the closest names when there is none."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            close = difflib.get_close_matches(str(name), list(self._entries), n=3, cutoff=0.5)
            guess = f"did you mean {' or '.join(close)}? " if close else ""
            hint = f" ({self.hint})" if self.hint else ""
            raise UserError(f"unknown {self.kind} {name!r}; {guess}choose one of: "
                            f"{', '.join(self._entries)}{hint}") from None

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def copy(self) -> "Registry[T]":
        """A registry with the same entries (tests register throw-away entries in a copy)."""
        other = Registry(self.kind, self.hint)
        other._entries = dict(self._entries)
        return other

    def values(self) -> list[T]:
        return list(self._entries.values())

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell ``pattern``, in registration order."""
        return [n for n in self._entries if fnmatch.fnmatch(n, pattern)]

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
