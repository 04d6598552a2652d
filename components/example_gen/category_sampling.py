"""Sampling one category file: check every line, drop exact duplicates, draw train and test.

One streaming pass per file (memory for the sample only) whose result depends on the seed, the
category and the file's content alone, not on line order or Beam's parallelism. Formats are
detected per file: simplified ndjson (.ndjson / .ndjson.gz, all official fields or only word +
drawing), raw ndjson (x, y, t strokes, simplified on reading) and numpy_bitmap .npy.
"""
import array
import dataclasses
import hashlib
import heapq
import io
from typing import Dict, Iterator, List, Tuple

import numpy as np

from domain.drawing_records import BITMAP_SIDE, Item, SkipLine, checked_drawing, is_raw
from domain.drawing_records import parse_record
from domain.quickdraw_source import QuickDrawDataError, category_path, file_size
from domain.quickdraw_source import open_binary
from domain.quickdraw_source import open_lines

# Formats as the manifest names them.
SIMPLIFIED = 'simplified ndjson'
RAW = 'raw ndjson (simplified here: RDP epsilon 2.0)'
BITMAP = 'numpy_bitmap (28x28 uint8)'
# More than this share of a file's lines skipped (each counted in the manifest) fails the run.
DEFAULT_MAX_SKIP_RATIO = 0.01


@dataclasses.dataclass
class CategorySample:
  """What sampling one category produced and counted."""
  category: str
  path: str
  train: List[Tuple[str, Item]]
  test: List[Tuple[str, Item]]
  read: int
  duplicates: int
  format: str = SIMPLIFIED
  # Fields seen on the file's lines (all official ones, or only word + drawing).
  fields: List[str] = dataclasses.field(default_factory=list)
  skipped: Dict[str, int] = dataclasses.field(default_factory=dict)
  # Per skip reason, the first such line: "<file>:<line>: <what is wrong>".
  first_skipped: Dict[str, str] = dataclasses.field(default_factory=dict)
  not_recognized: int = 0  # Left out by the recognized-only filter.

  def manifest_row(self) -> Dict:
    return {'category': self.category, 'file': self.path, 'format': self.format,
            'fields': self.fields, 'read': self.read,
            'skipped': dict(sorted(self.skipped.items())),
            'skipped_total': sum(self.skipped.values()),
            'first_skipped': dict(sorted(self.first_skipped.items())),
            'not_recognized_filtered': self.not_recognized,
            'duplicates_removed': self.duplicates,
            'train': len(self.train), 'test': len(self.test)}


class BottomK:
  """A seeded uniform sample of `k` distinct items in one pass, memory O(k).

  Each item's priority is a keyed hash of its content, so exact duplicates share a priority:
  the `k` smallest distinct priorities are a uniform sample without replacement of the
  distinct items (bottom-k sampling, a reservoir sample keyed by content), independent of
  line order and of how often an item repeats. A duplicate either meets its first copy in the
  heap or is above the threshold like it. Exact duplicate counting keeps 8 bytes per item.
  """

  def __init__(self, k: int, salt: str):
    self._k = k
    # Keyed by (seed, category): a length-prefixed salt hashed ahead of each item's content.
    salt_bytes = salt.encode('utf-8')
    self._salted = hashlib.blake2b(len(salt_bytes).to_bytes(4, 'big') + salt_bytes,
                                   digest_size=16)
    self._heap: List[Tuple[int, int, str, Item]] = []  # (-priority, line, id, item): max-heap.
    self._in_heap = set()
    self._fingerprints = array.array('Q')

  def offer(self, content: bytes, line_number: int, drawing_id: str, item: Item) -> None:
    hasher = self._salted.copy()
    hasher.update(content)
    digest = hasher.digest()
    self._fingerprints.append(int.from_bytes(digest[:8], 'little'))
    priority = int.from_bytes(digest, 'big')
    if priority in self._in_heap:
      return  # An exact duplicate of a sampled item: its first copy stays.
    if len(self._heap) < self._k:
      heapq.heappush(self._heap, (-priority, line_number, drawing_id, item))
      self._in_heap.add(priority)
    elif priority < -self._heap[0][0]:
      evicted = heapq.heapreplace(self._heap, (-priority, line_number, drawing_id, item))
      self._in_heap.discard(-evicted[0])
      self._in_heap.add(priority)

  @property
  def seen(self) -> int:
    return len(self._fingerprints)

  def distinct(self) -> int:
    return int(np.unique(np.frombuffer(self._fingerprints, dtype=np.uint64)).size)

  def sample(self) -> List[Tuple[str, Item]]:
    """The sampled (id, item) pairs by ascending priority."""
    return [(drawing_id, item) for _, _, drawing_id, item in sorted(
        self._heap, key=lambda entry: -entry[0])]


def _ndjson_items(path: str, category: str, recognized_only: bool, counts: CategorySample
                  ) -> Iterator[Tuple[int, bytes, Item]]:
  """(line number, content key, strokes) of the usable lines; counts skips on `counts`."""
  raw = None  # Decided by the first line that has strokes.
  fields = set()
  for line_number, line in enumerate(open_lines(path), start=1):
    if not line.strip():
      continue
    counts.read += 1
    try:
      record = parse_record(line)
      if raw is None and is_raw(record):
        raw = True
      elif raw is None and isinstance(record, dict) and record.get('drawing'):
        raw = False
      if isinstance(record, dict):
        fields.update(record)
      strokes = checked_drawing(record, category, bool(raw))
    except SkipLine as e:
      counts.skipped[e.reason] = counts.skipped.get(e.reason, 0) + 1
      counts.first_skipped.setdefault(e.reason, f'{path}:{line_number}: {e}')
      continue
    if recognized_only and record.get('recognized') is False:
      counts.not_recognized += 1
      continue
    yield line_number, repr(strokes).encode(), strokes  # Equal drawings, equal repr.
  counts.format = RAW if raw else SIMPLIFIED
  counts.fields = sorted(fields)


def _npy_header(f, path: str):
  """(shape, fortran_order, dtype) of a .npy file, read as numpy.lib.format defines it: the
  magic string and version, the header's length, then a dict literal padded with spaces and
  ended by a newline. numpy's own reader does not check that ending, so a header shifted by a
  byte (its declared length unchanged) would shift every row that follows by a pixel."""
  try:
    version = np.lib.format.read_magic(f)
    length_field = f.read(2 if version == (1, 0) else 4)
    header = f.read(int.from_bytes(length_field, 'little'))
    if len(header) != int.from_bytes(length_field, 'little'):
      raise ValueError('the file ends inside its header')
    if not header.endswith(b'\n'):
      raise ValueError(f'its {len(header)}-byte header does not end with the newline the '
                       'format requires: the header or the data after it is shifted')
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    return read_header(io.BytesIO(length_field + header))
  except ValueError as e:
    raise QuickDrawDataError(f'{path}: not a .npy file ({e}).') from e


def _bitmap_rows(path: str, counts: CategorySample, chunk_rows: int = 4096
                 ) -> Iterator[Tuple[int, bytes, Item]]:
  """(row number, content key, row bytes) of a numpy_bitmap file, read in chunks."""
  row_bytes = BITMAP_SIDE * BITMAP_SIDE
  with open_binary(path) as f:
    shape, fortran_order, dtype = _npy_header(f, path)
    if dtype != np.uint8 or len(shape) != 2 or shape[1] != row_bytes or fortran_order:
      raise QuickDrawDataError(
          f'{path}: numpy_bitmap files hold uint8 rows of {row_bytes} pixels (28x28), shape '
          f'(N, {row_bytes}); this one has dtype {dtype} and shape {shape}. Use the official '
          'numpy_bitmap/<category>.npy files, or save yours with '
          'np.save(path, images.reshape(len(images), 784).astype(np.uint8)).')
    counts.format, counts.fields = BITMAP, []
    # The data must be exactly the rows the header announces: a file that is longer has
    # bytes the header does not describe (a shifted header, or something appended).
    data_bytes = file_size(path) - f.tell()
    if data_bytes > shape[0] * row_bytes:
      raise QuickDrawDataError(
          f'{path}: the header announces {shape[0]} rows of {row_bytes} bytes, but '
          f'{data_bytes - shape[0] * row_bytes} more bytes follow them; the file is damaged '
          '(download it again).')
    for start in range(0, shape[0], chunk_rows):
      rows = min(chunk_rows, shape[0] - start)
      data = f.read(rows * row_bytes)
      if len(data) != rows * row_bytes:
        raise QuickDrawDataError(
            f'{path}: the header announces {shape[0]} rows but the file ends in row '
            f'{start + len(data) // row_bytes + 1}; download it again.')
      for i in range(rows):
        row = data[i * row_bytes:(i + 1) * row_bytes]
        row_number = start + i + 1
        counts.read += 1
        if not any(row):
          counts.skipped['empty_drawing'] = counts.skipped.get('empty_drawing', 0) + 1
          counts.first_skipped.setdefault('empty_drawing',
                                          f'{path}:{row_number}: the bitmap row is blank.')
          continue
        yield row_number, row, row


def sample_category(source: str, category: str, train_count: int, test_count: int,
                    seed: int, max_skip_ratio: float = DEFAULT_MAX_SKIP_RATIO,
                    recognized_only: bool = False) -> CategorySample:
  """One streaming pass over a category file: checks lines, drops exact duplicates, and draws
  disjoint test and train sets from the distinct drawings.

  Drawing ids are `<category>/<line or row number>` so every example leads back to its
  source. The draw depends only on (seed, category, file content), not on the other
  categories, the line order or Beam's parallelism. The test set is the `test_count` lowest
  priorities and train the next `train_count`, so a larger train set keeps the same test set.
  """
  path = category_path(source, category)
  counts = CategorySample(category=category, path=path, train=[], test=[], read=0, duplicates=0)
  sampler = BottomK(train_count + test_count, salt=f'{seed}:{category}')
  items = (_bitmap_rows(path, counts) if path.endswith('.npy')
           else _ndjson_items(path, category, recognized_only, counts))
  for number, content, item in items:
    sampler.offer(content, number, f'{category}/{number}', item)
  skipped = sum(counts.skipped.values())
  if counts.read and skipped > max_skip_ratio * counts.read:
    details = '; '.join(f'{reason}: {n} (first {counts.first_skipped[reason]})'
                        for reason, n in sorted(counts.skipped.items()))
    raise QuickDrawDataError(
        f'{path}: {skipped} of {counts.read} lines skipped, more than max_skip_ratio '
        f'{max_skip_ratio:g} allows. {details}. Fix or replace the file, or raise '
        'max_skip_ratio in PipelineConfig to accept these skips (they are counted in the '
        'manifest).')
  distinct = sampler.distinct()
  counts.duplicates = sampler.seen - distinct
  needed = train_count + test_count
  if distinct < needed:
    raise QuickDrawDataError(
        f'{path}: {distinct} distinct drawings ({counts.read} read, {counts.duplicates} '
        f'duplicates) but {train_count} train + {test_count} test are requested ({skipped} '
        f'lines skipped, {counts.not_recognized} not recognized); lower the per-category '
        'counts or choose other categories.')
  chosen = sampler.sample()
  counts.test, counts.train = chosen[:test_count], chosen[test_count:]
  return counts
