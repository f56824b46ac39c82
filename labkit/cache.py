"""A cache for results that are not Keras runs (scikit-learn baselines, dataset summaries).

Keyed like runs (sha256 of the canonical JSON of a name and its parameters) and
stored in the same per-profile store, so a warm chapter re-executes in seconds
and the committed store covers these results too.  Values must be plain JSON.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from labkit.runs import open_store, require_cached
from labkit.store import FORMAT, Store, digest

__all__ = ["memo", "memo_key"]

#: Bump when a memoised computation changes meaning without its parameters changing.
MEMO_VERSION = 1


def memo_key(name: str, params: dict, version: int = 1) -> str:
    return digest({"format": FORMAT, "memo": MEMO_VERSION, "name": name, "params": params,
                   **({"version": version} if version != 1 else {})})


def memo(name: str, params: dict, compute: Callable[[], Any], store: Store | None = None,
         version: int = 1) -> Any:
    """``compute()``'s JSON value, computed once per (name, params, version) and profile.

    ``params`` must describe everything the result depends on (the split's seed
    and sizes, the model's hyper-parameters…): it is the cache key.  Bump
    ``version`` when ``compute`` changes what it returns for the same params,
    otherwise the stored value keeps being served.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"memo name must be a non-empty string, got {name!r}")
    if not isinstance(params, dict):
        raise ValueError(f"memo params must be a dict, got {type(params).__name__}")
    store = store or open_store()
    key = memo_key(name, params, version)

    def run() -> dict:
        started = time.perf_counter()
        value = compute()
        return {"kind": "memo", "name": name, "params": params, "value": value,
                "seconds": time.perf_counter() - started}

    record, _ = store.get_or_compute(key, run, kind="memo", allow_compute=not require_cached())
    return record["value"]
