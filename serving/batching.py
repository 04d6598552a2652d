"""Micro-batching: concurrent searches on one model version share one model call.

Each request puts its query PNGs in the version's queue and waits. One worker thread takes
the first waiting request, then whatever else arrives within `max_wait` seconds (up to
`max_batch` images), runs the model once on all of them and hands each request its rows.
Under load the model runs on batches instead of on many small calls competing for the same
cores; a lone request waits at most `max_wait` longer.
"""
import collections
import queue
import threading
import time
from concurrent import futures
from typing import Callable, Dict, List, Optional, Sequence, Tuple

# Past the batch size where the model's cost per image stops falling, and room for the
# server's default 20 concurrent searches in one call (measured: benchmarks/README.md,
# "Serving").
MAX_BATCH = 32
MAX_WAIT_SECONDS = 0.002

# A function of a list of inputs that returns columns (name -> sequence), one row per input.
Columns = Dict[str, Sequence]
_Job = Tuple[List, futures.Future]


def _rows(columns: Columns, start: int, stop: int) -> Columns:
  return {name: values[start:stop] for name, values in columns.items()}


class MicroBatcher:
  """Calls `function` once for the inputs of every caller waiting together.

  `function(inputs)` returns columns with one row per input; each caller gets its own rows,
  in its own order. If a combined call fails, each caller's inputs are run alone so one bad
  request does not fail the others. After `close()` calls run directly, one at a time.
  """

  def __init__(self, function: Callable[[List], Columns], max_batch: int = MAX_BATCH,
               max_wait: float = MAX_WAIT_SECONDS, name: str = 'micro-batcher'):
    if max_batch < 1 or max_wait < 0:
      raise ValueError(f'max_batch {max_batch} must be >= 1 and max_wait {max_wait} >= 0')
    self._function = function
    self.max_batch = max_batch
    self.max_wait = max_wait
    self.calls = 0  # Calls of `function` made (one per batch).
    self.requests = 0
    # Inputs per combined call -> how many such calls: whether batches form under load.
    self.batch_sizes: 'collections.Counter[int]' = collections.Counter()
    self._queue: 'queue.Queue[Optional[_Job]]' = queue.Queue()
    self._lock = threading.Lock()
    self._closed = False
    self._thread = threading.Thread(target=self._work, name=name, daemon=True)
    self._thread.start()

  def __call__(self, inputs: Sequence) -> Columns:
    job = (list(inputs), futures.Future())
    with self._lock:  # Never queue behind the stop marker: nobody would serve the job.
      self.requests += 1
      closed = self._closed
      if not closed:
        self._queue.put(job)
    if closed:
      self._run([job])
    return job[1].result()

  def stats(self) -> Dict:
    """Requests taken, model calls made and their sizes (inputs per call -> calls)."""
    with self._lock:
      return {'requests': self.requests, 'calls': self.calls,
              'batch_sizes': {str(size): count for size, count in sorted(self.batch_sizes.items())}}

  def close(self) -> None:
    """Serves what is queued, then stops the worker (it holds the model)."""
    with self._lock:
      if self._closed:
        return
      self._closed = True
      self._queue.put(None)
    if threading.current_thread() is not self._thread:
      self._thread.join()

  def _work(self) -> None:
    carried: Optional[_Job] = None
    while True:
      first = carried if carried is not None else self._queue.get()
      carried = None
      if first is None:
        return
      batch, size, stop = [first], len(first[0]), False
      deadline = time.monotonic() + self.max_wait
      while size < self.max_batch:
        try:
          job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
          break
        if job is None:
          stop = True
          break
        if size + len(job[0]) > self.max_batch:
          carried = job  # Starts the next batch.
          break
        batch.append(job)
        size += len(job[0])
      self._run(batch)
      if stop:
        return

  def _run(self, batch: List[_Job]) -> None:
    inputs = [item for job in batch for item in job[0]]
    try:
      with self._lock:
        self.calls += 1
        self.batch_sizes[len(inputs)] += 1
      columns = self._function(inputs)
    except Exception as e:  # pylint: disable=broad-except  # Handed to the callers.
      if len(batch) > 1:
        for job in batch:
          self._run([job])
      else:
        batch[0][1].set_exception(e)
      return
    start = 0
    for inputs_of_job, future in batch:
      future.set_result(_rows(columns, start, start + len(inputs_of_job)))
      start += len(inputs_of_job)
