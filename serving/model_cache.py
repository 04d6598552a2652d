"""The loaded models of a server: a small least-recently-used cache, each key loaded once.

A loaded version (SavedModel and gallery) takes hundreds of MB, and every push adds one, so
the server keeps only the `capacity` most recently used. Requests that need the same version
while it loads wait for that one load instead of starting their own. Evicted values are
closed (a batching searcher stops its worker thread, which holds the model) and freed once
the requests still using them finish.
"""
import collections
import threading
from concurrent import futures
from typing import Callable, Dict, Generic, Hashable, List, Tuple, TypeVar

DEFAULT_CAPACITY = 4

V = TypeVar('V')


class LruCache(Generic[V]):
  """`get(key, load)` returns the cached value, or loads it with `load()` and keeps it."""

  def __init__(self, capacity: int = DEFAULT_CAPACITY,
               close: Callable[[V], None] = lambda value: getattr(value, 'close', lambda: None)(),
               after_eviction: Callable[[], None] = lambda: None):
    """`close(value)` is called on each evicted value, then `after_eviction()` once the cache
    holds no reference to them (e.g. to collect garbage)."""
    if capacity < 1:
      raise ValueError(f'capacity {capacity}: keep at least 1 model loaded')
    self._close = close
    self._after_eviction = after_eviction
    self.capacity = capacity
    self.loads = 0
    self.evictions = 0
    self._values: 'collections.OrderedDict[Hashable, V]' = collections.OrderedDict()
    self._loading: Dict[Hashable, futures.Future] = {}
    self._lock = threading.Lock()

  def keys(self) -> List[Hashable]:
    """Cached keys, least recently used first."""
    with self._lock:
      return list(self._values)

  def items(self) -> List[Tuple[Hashable, V]]:
    """Cached (key, value) pairs, least recently used first."""
    with self._lock:
      return list(self._values.items())

  def get(self, key: Hashable, load: Callable[[], V]) -> V:
    with self._lock:
      if key in self._values:
        self._values.move_to_end(key)
        return self._values[key]
      pending = self._loading.get(key)
      loader = pending is None
      if loader:
        pending = self._loading[key] = futures.Future()
        self.loads += 1
    if not loader:
      return pending.result()
    try:
      value = load()
    except BaseException as e:
      with self._lock:  # Not cached: the next request tries again.
        del self._loading[key]
      pending.set_exception(e)
      raise
    evicted = []
    with self._lock:
      del self._loading[key]
      self._values[key] = value
      while len(self._values) > self.capacity:
        evicted.append(self._values.popitem(last=False)[1])
        self.evictions += 1
    pending.set_result(value)
    if evicted:
      while evicted:
        self._close(evicted.pop())
      self._after_eviction()
    return value
