"""Reading, checking, deduplicating, sampling and rendering Quick, Draw! category files.

Plain Python (no Beam, no TensorFlow graph) so each step is testable on its own; the
ExampleGen executor (`quickdraw_example_gen.py`) runs `sample_category` per category inside
Beam. Formats (detected per file, see `FORMATS`): simplified ndjson (.ndjson / .ndjson.gz,
all official fields or only word + drawing), raw ndjson (x, y, t strokes, simplified here
the way Google describes it, `components/stroke_simplification.py`) and numpy_bitmap .npy.
"""
import array
import dataclasses
import difflib
import gzip
import hashlib
import heapq
import io
import math
import os
import random
import urllib.parse
import zlib
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw
import tensorflow as tf

from components import stroke_simplification
from components import strict_json

# Suffixes of category files, in order of preference when a category has several.
CATEGORY_SUFFIXES = ('.ndjson', '.ndjson.gz', '.npy')
SIMPLIFIED_SUFFIXES = ('.ndjson', '.ndjson.gz')  # Kept for readers of the first version.
# Simplified drawings are aligned and scaled by Google to this coordinate range.
SIMPLIFIED_MAX = 255
# Raw coordinates are screen pixels; a bound far beyond any screen keeps simplification finite.
RAW_MAX = 2 ** 31
BITMAP_SIDE = 28

# Formats as the manifest names them.
SIMPLIFIED = 'simplified ndjson'
RAW = 'raw ndjson (simplified here: RDP epsilon 2.0)'
BITMAP = 'numpy_bitmap (28x28 uint8)'
FORMATS = (SIMPLIFIED, RAW, BITMAP)

# Lines that are read but not used, by reason. The manifest counts each one; more than
# `max_skip_ratio` of a file's lines skipped fails the run.
SKIP_REASONS = ('malformed_json', 'no_drawing', 'empty_drawing', 'bad_stroke',
                'stroke_xy_length_mismatch', 'non_finite_number', 'coordinates_out_of_range',
                'word_mismatch')
DEFAULT_MAX_SKIP_RATIO = 0.01

# Feature names of the emitted tf.Examples; schema/schema.pbtxt lists the same.
IMAGE_KEY = 'image_png'
CATEGORY_KEY = 'category'
ID_KEY = 'drawing_id'

Drawing = List[Tuple[List[int], List[int]]]
_NUMBER_TYPES = {int, float}  # Not bool: JSON true/false are no coordinates.
# A sampled item: strokes (ndjson formats) or the 784 bytes of a 28x28 bitmap row.
Item = Union[Drawing, bytes]


class QuickDrawDataError(ValueError):
  """Bad source data; the message names the file (and line) and what to do."""


class _SkipLine(Exception):
  """One unusable line: `reason` is one of SKIP_REASONS, `message` says what is wrong."""

  def __init__(self, reason: str, message: str):
    super().__init__(message)
    self.reason = reason


def is_url(source: str) -> bool:
  return source.startswith(('http://', 'https://'))


def _category_of(filename: str) -> Optional[str]:
  for suffix in CATEGORY_SUFFIXES:
    if filename.endswith(suffix):
      return filename[:-len(suffix)]
  return None


def list_categories(source: str) -> List[str]:
  """Category names with a file at `source` (local folder or gs://), sorted."""
  if is_url(source):
    return _official_categories()
  if not tf.io.gfile.isdir(source):
    raise QuickDrawDataError(
        f'{source}: no such folder. Set QUICKDRAW_SOURCE to a folder (or gs:// / https:// '
        'prefix) holding <category>.ndjson, <category>.ndjson.gz or <category>.npy files.')
  names = {_category_of(f) for f in tf.io.gfile.listdir(source)} - {None}
  if not names:
    raise QuickDrawDataError(
        f'{source}: no <category>.ndjson, <category>.ndjson.gz or <category>.npy files in this '
        'folder. Point the source at the folder of the official simplified (or numpy_bitmap) '
        'files.')
  return sorted(names)


def _official_categories() -> List[str]:
  path = os.path.join(os.path.dirname(__file__), 'data', 'categories.txt')
  with open(path, encoding='utf-8') as f:
    return [line.strip() for line in f if line.strip()]


def choose_categories(available: Sequence[str], count: int, seed: int) -> List[str]:
  """`count` names drawn at random (seeded) from `available`, returned sorted."""
  available = sorted(set(available))
  if count > len(available):
    raise QuickDrawDataError(
        f'{count} categories requested but the source has only {len(available)}.')
  return sorted(random.Random(seed).sample(available, count))


def _missing_category(source: str, category: str, available: Sequence[str]) -> QuickDrawDataError:
  close = difflib.get_close_matches(category, available, n=3, cutoff=0.6)
  hint = f' Did you mean {", ".join(map(repr, close))}?' if close else ''
  return QuickDrawDataError(
      f'{source}: category {category!r} has no file {category}.ndjson, {category}.ndjson.gz '
      f'or {category}.npy. Names are case-sensitive and keep their spaces.{hint}')


def category_path(source: str, category: str) -> str:
  """The file holding `category` at `source`, by CATEGORY_SUFFIXES preference; https://
  sources are downloaded into the local cache (components/url_cache.py) first."""
  if is_url(source):
    from components import url_cache  # Imported here: only URL sources need it.
    base = source.rstrip('/') + '/' + urllib.parse.quote(category)
    for suffix in CATEGORY_SUFFIXES:
      try:
        return url_cache.fetch(base + suffix)
      except url_cache.NotFoundError:
        continue
    raise _missing_category(source, category, _official_categories())
  for suffix in CATEGORY_SUFFIXES:
    path = os.path.join(source, category + suffix)
    if tf.io.gfile.exists(path):
      return path
  available = ({_category_of(f) for f in tf.io.gfile.listdir(source)} - {None}
               if tf.io.gfile.isdir(source) else [])
  raise _missing_category(source, category, available)


def _open_binary(path: str):
  """Python's own file for local paths (3x faster than GFile here), GFile for gs:// and co."""
  return tf.io.gfile.GFile(path, 'rb') if '://' in path else open(path, 'rb')


def _open_lines(path: str) -> Iterator[bytes]:
  """The lines of a (gzipped) text file, streamed; a truncated .gz fails with the line reached."""
  with _open_binary(path) as raw:
    stream = gzip.GzipFile(fileobj=raw) if path.endswith('.gz') else raw
    line_number = 0
    try:
      for line_number, line in enumerate(stream, start=1):
        yield line
    except (EOFError, OSError, zlib.error) as e:  # Cut short, or corrupt inside.
      raise QuickDrawDataError(
          f'{path}:{line_number + 1}: the file is truncated or not valid gzip after line '
          f'{line_number} ({e}). Download it again (an interrupted copy is the usual cause).'
      ) from e


def _checked_strokes(drawing, raw: bool) -> Drawing:
  """The (x, y) lists of each stroke, checked; `raw` strokes may carry t and any coordinates."""
  if not isinstance(drawing, list) or not drawing:
    raise _SkipLine('empty_drawing', '"drawing" is empty or not a list of strokes.')
  strokes = []
  for i, stroke in enumerate(drawing):
    if (not isinstance(stroke, list) or len(stroke) not in ((2, 3) if raw else (2,))
        or not all(isinstance(v, list) for v in stroke)):
      raise _SkipLine('bad_stroke', f'stroke {i} is not a pair of x and y lists' +
                      (' (plus t)' if raw else '') + '.')
    xs, ys = stroke[0], stroke[1]
    if len(xs) != len(ys):
      raise _SkipLine('stroke_xy_length_mismatch',
                      f'stroke {i} is not a pair of equally long, non-empty x and y lists '
                      f'({len(xs)} x values, {len(ys)} y values).')
    if not xs:
      raise _SkipLine('bad_stroke', f'stroke {i} is not a pair of equally long, non-empty x '
                      'and y lists (it has no points).')
    for values in (xs, ys):
      # Set, min and max run in C: this check is most of the reading time otherwise.
      types = set(map(type, values))
      if not types <= _NUMBER_TYPES:
        raise _SkipLine('bad_stroke', f'stroke {i} has coordinates that are not numbers.')
      # Checked before min and max, which NaN misleads; ints are finite (and may be too
      # large for a float, which the range checks refuse).
      if float in types and not all(type(v) is int or math.isfinite(v) for v in values):
        raise _SkipLine('non_finite_number',
                        f'stroke {i} has coordinates that are not finite numbers (NaN or '
                        'infinite).')
      if raw and (min(values) < -RAW_MAX or max(values) > RAW_MAX):
        raise _SkipLine('coordinates_out_of_range',
                        f'stroke {i} has coordinates beyond +-{RAW_MAX}, far outside any screen.')
      if not raw and (min(values) < 0 or max(values) > SIMPLIFIED_MAX):
        raise _SkipLine(
            'coordinates_out_of_range',
            f'stroke {i} has coordinates outside 0..{SIMPLIFIED_MAX}; this is not simplified '
            'data (raw files carry x, y and t per stroke and are simplified on reading).')
    strokes.append((list(xs), list(ys)))
  return strokes


def _is_raw(record) -> bool:
  """Raw ndjson strokes are [x, y, t]; simplified ones are [x, y]."""
  drawing = record.get('drawing') if isinstance(record, dict) else None
  return (isinstance(drawing, list) and bool(drawing) and isinstance(drawing[0], list)
          and len(drawing[0]) == 3)


def _parse_record(line: bytes):
  """The JSON value of a line: UTF-8, finite numbers only, nested at most 400 deep."""
  try:
    return strict_json.loads(line)
  except strict_json.JsonLineError as e:
    reason = 'non_finite_number' if e.reason == strict_json.NOT_FINITE else 'malformed_json'
    raise _SkipLine(reason, f'{e}.') from e


def _checked_drawing(record, category: str, raw: bool) -> Drawing:
  if not isinstance(record, dict):
    raise _SkipLine('malformed_json', 'not a JSON object.')
  if 'drawing' not in record:
    raise _SkipLine('no_drawing', 'the line has no "drawing" field.')
  word = record.get('word', category)
  if word != category:
    raise _SkipLine('word_mismatch',
                    f'"word" is {word!r} but the file is for category {category!r}.')
  strokes = _checked_strokes(record['drawing'], raw)
  return stroke_simplification.simplify(strokes) if raw else strokes


def parse_drawing(line: bytes, path: str, line_number: int, category: str,
                  raw: bool = False) -> Drawing:
  """The strokes of one ndjson line, checked; raises with the file and line on bad input."""
  try:
    record = _parse_record(line)
  except _SkipLine as e:
    raise QuickDrawDataError(f'{path}:{line_number}: {e}') from e
  return record_drawing(record, f'{path}:{line_number}', category, raw)


def record_drawing(record, where: str, category: str, raw: bool = False) -> Drawing:
  """The strokes of a parsed ndjson record, checked; raises naming `where` on bad input."""
  try:
    return _checked_drawing(record, category, raw)
  except _SkipLine as e:
    raise QuickDrawDataError(f'{where}: {e}') from e


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


class _BottomK:
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
  for line_number, line in enumerate(_open_lines(path), start=1):
    if not line.strip():
      continue
    counts.read += 1
    try:
      record = _parse_record(line)
      if raw is None and _is_raw(record):
        raw = True
      elif raw is None and isinstance(record, dict) and record.get('drawing'):
        raw = False
      if isinstance(record, dict):
        fields.update(record)
      strokes = _checked_drawing(record, category, bool(raw))
    except _SkipLine as e:
      counts.skipped[e.reason] = counts.skipped.get(e.reason, 0) + 1
      counts.first_skipped.setdefault(e.reason, f'{path}:{line_number}: {e}')
      continue
    if recognized_only and record.get('recognized') is False:
      counts.not_recognized += 1
      continue
    yield line_number, repr(strokes).encode(), strokes  # Equal drawings, equal repr.
  counts.format = RAW if raw else SIMPLIFIED
  counts.fields = sorted(fields)


def _bitmap_rows(path: str, counts: CategorySample, chunk_rows: int = 4096
                 ) -> Iterator[Tuple[int, bytes, Item]]:
  """(row number, content key, row bytes) of a numpy_bitmap file, read in chunks."""
  row_bytes = BITMAP_SIDE * BITMAP_SIDE
  with _open_binary(path) as f:
    try:
      version = np.lib.format.read_magic(f)
      read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                     else np.lib.format.read_array_header_2_0)
      shape, fortran_order, dtype = read_header(f)
    except ValueError as e:
      raise QuickDrawDataError(f'{path}: not a .npy file ({e}).') from e
    if dtype != np.uint8 or len(shape) != 2 or shape[1] != row_bytes or fortran_order:
      raise QuickDrawDataError(
          f'{path}: numpy_bitmap files hold uint8 rows of {row_bytes} pixels (28x28), shape '
          f'(N, {row_bytes}); this one has dtype {dtype} and shape {shape}. Use the official '
          'numpy_bitmap/<category>.npy files, or save yours with '
          'np.save(path, images.reshape(len(images), 784).astype(np.uint8)).')
    counts.format, counts.fields = BITMAP, []
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
  sampler = _BottomK(train_count + test_count, salt=f'{seed}:{category}')
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


def render_png(drawing: Drawing, size: int = 256, stroke_width: int = 3) -> bytes:
  """Black strokes on a white `size` x `size` grayscale PNG (what a person would see)."""
  scale = (size - 1) / SIMPLIFIED_MAX
  image = Image.new('L', (size, size), color=255)
  pen = ImageDraw.Draw(image)
  for xs, ys in drawing:
    points = [(x * scale, y * scale) for x, y in zip(xs, ys)]
    if len(points) == 1:
      points = points * 2  # A single point still leaves a dot.
    pen.line(points, fill=0, width=stroke_width, joint='curve')
  return _png(image)


def render_bitmap_png(row: bytes, size: int = 256) -> bytes:
  """A 28x28 numpy_bitmap row (white ink on black) as black ink on white, upscaled bilinearly
  to `size` x `size` so it meets the same PNG contract as rendered strokes."""
  pixels = 255 - np.frombuffer(row, dtype=np.uint8).reshape(BITMAP_SIDE, BITMAP_SIDE)
  return _png(Image.fromarray(pixels, mode='L').resize((size, size), Image.BILINEAR))


def render_item(item: Item, size: int = 256, stroke_width: int = 3) -> bytes:
  if isinstance(item, bytes):
    return render_bitmap_png(item, size)
  return render_png(item, size, stroke_width)


def _png(image: Image.Image) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format='PNG')
  return buffer.getvalue()


def to_example(drawing_id: str, category: str, png: bytes) -> tf.train.Example:
  def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
  return tf.train.Example(features=tf.train.Features(feature={
      IMAGE_KEY: _bytes(png),
      CATEGORY_KEY: _bytes(category.encode('utf-8')),
      ID_KEY: _bytes(drawing_id.encode('utf-8')),
  }))
