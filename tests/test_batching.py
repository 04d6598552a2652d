"""The server's loaded-model cache (serving/model_cache.py) and micro-batcher
(serving/batching.py), with fake loaders and fake models."""
import time
from concurrent import futures

import numpy as np
import pytest

from serving import batching
from serving import model_cache


# A bounded cache of loaded versions.

def test_the_cache_keeps_the_most_recently_used_versions_and_closes_the_rest():
  loads, closed = [], []

  def loader(key):
    def load():
      loads.append(key)
      return f'searcher {key}'
    return load

  after = []  # Closed values when after_eviction ran.
  cache = model_cache.LruCache(capacity=2, close=closed.append,
                               after_eviction=lambda: after.append(len(closed)))
  for key in (1, 2, 1, 3, 1, 2):
    assert cache.get(key, loader(key)) == f'searcher {key}'
  # 3 pushed out 2 (1 was used since); then 2 pushed out 3.
  assert loads == [1, 2, 3, 2] and closed == ['searcher 2', 'searcher 3'] and after == [1, 2]
  assert cache.keys() == [1, 2] and cache.evictions == 2


def test_concurrent_requests_for_one_version_load_it_once_and_failures_are_not_kept():
  cache = model_cache.LruCache(capacity=4)
  loads = []

  def slow_load():
    loads.append(1)
    time.sleep(0.3)
    return object()

  with futures.ThreadPoolExecutor(8) as pool:
    values = list(pool.map(lambda _: cache.get('v', slow_load), range(8)))
  assert len(loads) == 1 and all(v is values[0] for v in values)

  def broken():
    raise OSError('disk')

  with pytest.raises(OSError):
    cache.get('w', broken)
  assert cache.get('w', lambda: 'loaded') == 'loaded'


# Concurrent searches share model calls.

def _fake_embed(calls):
  def embed(pngs):
    calls.append(len(pngs))
    time.sleep(0.05)  # A model call's cost, so requests overlap.
    return {'embedding': np.array([[len(p), p[0]] for p in pngs], np.float32),
            'category': [p.decode() for p in pngs]}
  return embed


def test_concurrent_requests_are_batched_and_get_their_own_rows():
  calls = []
  batcher = batching.MicroBatcher(_fake_embed(calls), max_batch=64, max_wait=0.02)
  requests = [[f'q{i}-{j}'.encode() for j in range(1 + i % 3)] for i in range(16)]
  with futures.ThreadPoolExecutor(16) as pool:
    answers = list(pool.map(batcher, requests))
  alone = [_fake_embed([])(r) for r in requests]
  for got, expected in zip(answers, alone):
    assert got['category'] == expected['category']
    np.testing.assert_array_equal(got['embedding'], expected['embedding'])
  assert batcher.calls == len(calls) < len(requests) == batcher.requests
  assert sum(calls) == sum(len(r) for r in requests) and max(calls) <= 64
  stats = batcher.stats()
  assert stats['requests'] == len(requests) and stats['calls'] == len(calls)
  assert stats['batch_sizes'] == {str(size): calls.count(size) for size in set(calls)}
  batcher.close()


def test_a_batch_never_exceeds_max_batch_and_a_failing_request_fails_alone():
  calls = []

  def embed(items):
    calls.append(len(items))
    if b'bad' in items:
      raise ValueError('undecodable')
    time.sleep(0.02)
    return {'x': list(items)}

  batcher = batching.MicroBatcher(embed, max_batch=4, max_wait=0.05)
  requests = [[b'a', b'b'], [b'bad'], [b'c', b'd', b'e'], [b'f']]
  with futures.ThreadPoolExecutor(4) as pool:
    jobs = [pool.submit(batcher, r) for r in requests]
    results = [job.exception() or job.result() for job in jobs]
  assert isinstance(results[1], ValueError)
  assert [r['x'] for i, r in enumerate(results) if i != 1] == [[b'a', b'b'], [b'c', b'd', b'e'],
                                                             [b'f']]
  assert all(size <= 4 for size in calls)
  batcher.close()
  assert batcher([b'g'])['x'] == [b'g']  # After close: run directly.
