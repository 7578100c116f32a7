"""The bounded caches of the solvers (and of the layers above them), and one place to clear them.

Constants that a solve rebuilds from its settings (tableaux rounded to a dtype, tolerances as
tensors, the RK matrix on a device, the fused solve's step control) are made once per setting and
kept in `functools.lru_cache`s with a size bound, so that a long sweep over many settings,
dtypes or devices does not keep every one alive. `bounded_cache` makes such a cache and registers
it here; `register_clear` registers anything else that holds memory between solves (the fused
solve's buffer pool). `clear_caches` empties all of them, e.g. to hand device memory back between
experiments: the next solve rebuilds what it needs, with the same values, so its results are
bitwise those before clearing.

Modules above the solvers (`anode.models`) register their own caches here too, so that this
package never imports them (the arrows point down: models -> solve -> solvers).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["DEFAULT_MAXSIZE", "bounded_cache", "cache_info", "clear_caches", "register_clear"]

#: The default number of entries a `bounded_cache` keeps (least recently used dropped first).
DEFAULT_MAXSIZE = 64

F = TypeVar("F", bound=Callable[..., Any])

_LOCK = threading.Lock()
_CACHES: dict[str, Any] = {}  # "module.function" -> the lru_cache wrapper
_CLEARERS: dict[str, Callable[[], None]] = {}  # name -> function emptying that store


def bounded_cache(maxsize: int = DEFAULT_MAXSIZE) -> Callable[[F], F]:
    """A decorator: `functools.lru_cache(maxsize)` on the function, registered for `clear_caches`.

    Arguments:
        maxsize: the most entries kept (a positive integer; the least recently used is dropped).

    Returns:
        The decorator; the decorated function keeps `cache_info()` and `cache_clear()`.

    Raises:
        ValueError: `maxsize` is not a positive integer (an unbounded cache is what this avoids).
    """
    if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1:
        raise ValueError(f"maxsize must be a positive integer, got {maxsize!r}")

    def decorate(function: F) -> F:
        wrapped = functools.lru_cache(maxsize=maxsize)(function)
        with _LOCK:
            _CACHES[f"{function.__module__}.{function.__qualname__}"] = wrapped
        return wrapped  # type: ignore[return-value]

    return decorate


def register_clear(name: str, clear: Callable[[], None]) -> None:
    """Have `clear_caches` call `clear()` too (for stores that are not a `bounded_cache`).

    Arguments:
        name: a name for it (registering a name again replaces the earlier function).
        clear: a function of no arguments that empties the store.

    Returns:
        None.
    """
    with _LOCK:
        _CLEARERS[name] = clear


def cache_info() -> dict[str, tuple[int, int, int | None, int]]:
    """The state of every registered `bounded_cache`.

    Arguments:
        None.

    Returns:
        "module.function" -> its `cache_info()`, the named tuple (hits, misses, maxsize, currsize).
    """
    with _LOCK:
        caches = dict(_CACHES)
    return {name: wrapped.cache_info() for name, wrapped in caches.items()}


def clear_caches() -> None:
    """Empty every registered cache and store: the solvers' constants (`solvers.rk`,
    `solvers.fused`), the fused solve's buffer pool, and those that layers above registered
    (`anode.models`' default output times, once `anode.models` is imported).

    Tensors still referenced elsewhere (a live autograd graph, a model) stay valid; the caches
    only stop holding them. Later solves rebuild what they need with the same values, so their
    results are bitwise those from before clearing.

    Arguments:
        None.

    Returns:
        None.
    """
    with _LOCK:
        caches, clearers = list(_CACHES.values()), list(_CLEARERS.values())
    for wrapped in caches:
        wrapped.cache_clear()
    for clear in clearers:
        clear()
