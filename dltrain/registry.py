"""Registries: a name maps to a constructor plus the metadata the code asks about (the tasks a
model serves, the input kind a dataset yields, whether a scheduler steps per batch), so that
nothing else keeps a list of names. Modules register themselves; a registry that owns a package
imports every module of it the first time it is asked, so adding one is one module (and one YAML).
"""

from __future__ import annotations

import pkgutil
from dataclasses import dataclass
from importlib import import_module
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping

from dltrain.errors import DltrainError

# A metadata field without a default: every entry must state it.
REQUIRED = object()


@dataclass(frozen=True)
class Entry:
    """One registered name: ``constructor`` and its ``metadata``, also readable as attributes
    (``MODELS["lstm"].stackable``). Calling the entry calls the constructor."""

    name: str
    constructor: Callable
    metadata: Mapping[str, Any]

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__") or key in ("name", "constructor", "metadata"):
            raise AttributeError(key)
        try:
            return self.metadata[key]
        except KeyError:
            raise AttributeError(f"{self.name} has no metadata '{key}'") from None

    def __call__(self, *args, **kwargs):
        return self.constructor(*args, **kwargs)


class Registry:
    """Entries of one config group (``group`` names it in messages: "Unknown model 'x'; ...").

    ``fields`` maps each metadata key to its default (``REQUIRED`` when every entry must state
    it); an entry with a missing or unknown key is a bug and raises at import. ``package``: a
    package whose modules register entries; all of them are imported on the first query, so
    that heavy modules (torch) load only when a registry is actually asked."""

    def __init__(self, group: str, fields: Mapping[str, Any] | None = None, *,
                 package: str | None = None):
        self.group = group
        self.fields = dict(fields or {})
        self.package = package
        self._entries: dict[str, Entry] = {}
        self._loaded = package is None

    # ---- registering

    def register(self, *names: str, **metadata) -> Callable:
        """Decorator: ``@MODELS.register("mlp", tasks=..., ...)`` over a class or function; more
        than one name registers the same constructor under each."""
        if not names:
            raise TypeError(f"register() needs at least one {self.group} name")

        def decorator(constructor):
            for name in names:
                self.add(name, constructor, **metadata)
            return constructor

        return decorator

    def add(self, name: str, constructor: Callable, **metadata) -> Entry:
        unknown = sorted(set(metadata) - set(self.fields))
        missing = [key for key, default in self.fields.items()
                   if default is REQUIRED and key not in metadata]
        if unknown or missing:
            raise TypeError(f"{self.group} '{name}' is registered with unknown metadata {unknown} "
                            f"or without {missing}; its metadata keys are: {', '.join(self.fields)}")
        previous = self._entries.get(name)
        if previous is not None and previous.constructor is not constructor:
            raise ValueError(f"{self.group} '{name}' is registered twice: by "
                             f"{_origin(previous.constructor)} and {_origin(constructor)}")
        values = {key: metadata.get(key, default) for key, default in self.fields.items()}
        entry = Entry(name, constructor, MappingProxyType(values))
        self._entries[name] = entry
        return entry

    # ---- asking

    def __getitem__(self, name: str) -> Entry:
        self._load()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise DltrainError(f"Unknown {self.group} '{name}'; valid options are: "
                               f"{', '.join(sorted(self._entries))}.") from None

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def names(self) -> list[str]:
        """Every registered name: module by module (by module name), in each module in the order
        registered, whichever module happened to be imported first."""
        return [entry.name for entry in self.entries()]

    def entries(self) -> list[Entry]:
        self._load()
        order = {name: i for i, name in enumerate(self._entries)}
        return sorted(self._entries.values(),
                      key=lambda e: (getattr(e.constructor, "__module__", ""), order[e.name]))

    def where(self, **metadata) -> list[Entry]:
        """Entries whose metadata matches: equal, or containing the value for a tuple field
        (``MODELS.where(tasks="binary", input_kinds="image")``)."""
        return [entry for entry in self.entries()
                if all(_matches(entry.metadata[key], wanted) for key, wanted in metadata.items())]

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # before importing: a module may ask its own registry at import
        try:
            package = import_module(self.package)
            for module in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
                if not module.name.rpartition(".")[2].startswith("_"):
                    import_module(module.name)
        except BaseException:
            self._loaded = False
            raise

    def __repr__(self) -> str:
        state = ", ".join(self._entries) if self._loaded else f"{self.package} not imported yet"
        return f"Registry({self.group!r}: {state})"


def _matches(have: Any, wanted: Any) -> bool:
    if isinstance(have, (tuple, list, frozenset, set)) and not isinstance(wanted, (tuple, list)):
        return wanted in have
    return have == wanted


def _origin(constructor: Callable) -> str:
    return f"{getattr(constructor, '__module__', '?')}.{getattr(constructor, '__qualname__', constructor)}"


def one_of(words: list[str], conjunction: str = "or") -> str:
    """"a", "a or b", "a, b or c": the valid names in a sentence."""
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {conjunction} {words[-1]}"
