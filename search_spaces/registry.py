"""A registry of plug-in classes by name, shared by every extension point."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from search_spaces.errors import RegistryError

Plugin = TypeVar("Plugin")


class Registry(Generic[Plugin]):
    """Maps names to subclasses of `base`; rejects duplicates and non-subclasses."""

    def __init__(self, kind: str, base: type[Plugin]) -> None:
        self.kind = kind
        self.base = base
        self._classes: dict[str, type[Plugin]] = {}

    def register(self, name: str) -> Callable[[type[Plugin]], type[Plugin]]:
        def decorator(cls: type[Plugin]) -> type[Plugin]:
            if not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise RegistryError(
                    f"{self.kind} {name!r}: {cls!r} is not a subclass of {self.base.__name__}; "
                    f"derive it from {self.base.__name__}"
                )
            if name in self._classes:
                raise RegistryError(
                    f"{self.kind} {name!r} is already registered by {self._classes[name].__qualname__}; "
                    "choose another name"
                )
            self._classes[name] = cls
            cls.name = name  # type: ignore[attr-defined]
            return cls

        return decorator

    def get(self, name: str) -> type[Plugin]:
        try:
            return self._classes[name]
        except KeyError:
            raise RegistryError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names()) or '(none)'}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes
