"""The oracle registry: built-in oracles by name, and user oracles loaded from a file.

``register`` (usable as a class decorator) adds an :class:`~aero.oracles.api.Oracle`
subclass under its ``name``; ``get`` returns the class; ``names`` lists them in
registration order. :func:`load_file` loads ``path.py:ClassName`` by file path (no
``sys.path`` search), and :func:`resolve` accepts either spelling.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from .api import Oracle, OracleError

_REGISTRY: dict[str, type[Oracle]] = {}


def register(cls: type[Oracle]) -> type[Oracle]:
    """Register an Oracle subclass under ``cls.name`` (a name may be registered once)."""
    if not (isinstance(cls, type) and issubclass(cls, Oracle)):
        raise TypeError(f"{cls!r} is not an Oracle subclass")
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if _REGISTRY.get(cls.name, cls) is not cls:
        raise ValueError(f"an oracle named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type[Oracle]:
    """The oracle class registered as ``name``."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise OracleError(f"no oracle named {name!r} (known: {', '.join(names())})") from None


def names() -> list[str]:
    """Every registered oracle name: the built-ins in their fixed order, then the others in
    registration order."""
    _load_builtins()
    order = list(_REGISTRY)

    def key(n: str) -> tuple[int, int]:
        mod = _REGISTRY[n].__module__.rpartition(".")[2]
        group = BUILTIN_MODULES.index(mod) if mod in BUILTIN_MODULES else len(BUILTIN_MODULES)
        return group, order.index(n)

    return sorted(order, key=key)


def default_names() -> list[str]:
    """The oracles ``aero check`` runs by default: all but the per-instruction ones and
    those that take an argument (``name:ARG``, e.g. ``screen-contains:TEXT``)."""
    return [n for n in names() if not _REGISTRY[n].per_instruction
            and not getattr(_REGISTRY[n], "argument", "")]


BUILTIN_MODULES = ("builtin_replay", "builtin_cpu", "builtin_devices", "builtin_memory",
                   "builtin_output", "builtin_liveness", "builtin_screen")


def _load_builtins() -> None:
    """Import the built-in modules for their registrations."""
    for mod in BUILTIN_MODULES:
        importlib.import_module(f"{__package__}.{mod}")


def load_file(spec: str) -> type[Oracle]:
    """``path.py:ClassName`` -> the class, loaded from that file."""
    path_text, sep, cls_name = spec.rpartition(":")
    if not sep or not path_text or not cls_name:
        raise OracleError(f"{spec}: a user oracle is given as path.py:ClassName")
    path = Path(path_text)
    if not path.is_file():
        raise OracleError(f"{path}: no such oracle file")
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    mod_name = f"aero_user_oracle_{key}"
    try:
        mod_spec = importlib.util.spec_from_file_location(mod_name, path)
        if mod_spec is None or mod_spec.loader is None:
            raise OracleError(f"{path}: not a Python file")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[mod_name] = module
        mod_spec.loader.exec_module(module)
    except OracleError:
        raise
    except Exception as exc:  # the user's file: any error is a load error
        sys.modules.pop(mod_name, None)
        raise OracleError(f"{path}: cannot load: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise OracleError(f"{path}: no class {cls_name}")
    if not (isinstance(cls, type) and issubclass(cls, Oracle)):
        raise OracleError(f"{path}:{cls_name} is not an Oracle subclass "
                          f"(from aero.oracles import Oracle)")
    return cls


def resolve(spec: str) -> type[Oracle]:
    """A registered name or ``path.py:ClassName``."""
    if ":" in spec and (".py:" in spec or "/" in spec):
        return load_file(spec)
    return get(spec)


def build(specs: list[str] | None, options: dict[str, dict[str, Any]] | None = None) -> list:
    """Instantiate the oracles named by ``specs`` (names or ``path.py:Class``; default: the
    default set), each with its keyword options from ``options[spec]``; a spec named twice
    is built once. Raises :class:`OracleError` for an unknown oracle or a bad option."""
    chosen = specs if specs else default_names()
    out = []
    seen: set[str] = set()
    for spec in chosen:
        if spec in seen:
            continue
        seen.add(spec)
        kwargs = dict((options or {}).get(spec, {}))
        name, sep, arg = spec.partition(":")
        if sep and not (".py:" in spec or "/" in spec):
            # name:ARG, for an oracle that takes one argument (its class's ``argument``).
            cls = get(name)
            if not getattr(cls, "argument", ""):
                raise OracleError(f"oracle {name} takes no argument ({spec!r})")
            kwargs[cls.argument] = arg
        else:
            cls = resolve(spec)
        try:
            out.append(cls(**kwargs))
        except (TypeError, ValueError) as exc:
            raise OracleError(f"oracle {spec}: {exc}") from None
    return out
