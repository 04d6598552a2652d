"""Reading, deduplicating, sampling and rendering Quick, Draw! simplified drawings.

Plain Python (no Beam, no TensorFlow graph) so each step is testable on its own; the
ExampleGen executor (`quickdraw_example_gen.py`) runs these per category inside Beam.
"""
import dataclasses
import gzip
import io
import json
import os
import random
import urllib.parse
from typing import Iterator, List, Sequence, Tuple

from PIL import Image, ImageDraw
import tensorflow as tf

SIMPLIFIED_SUFFIXES = ('.ndjson', '.ndjson.gz')
# Simplified drawings are aligned and scaled by Google to this coordinate range.
SIMPLIFIED_MAX = 255

# Feature names of the emitted tf.Examples; schema/schema.pbtxt lists the same.
IMAGE_KEY = 'image_png'
CATEGORY_KEY = 'category'
ID_KEY = 'drawing_id'

Drawing = List[Tuple[List[int], List[int]]]


class QuickDrawDataError(ValueError):
  """Bad source data; the message names the file (and line) and what to do."""


def is_url(source: str) -> bool:
  return source.startswith(('http://', 'https://'))


def list_categories(source: str) -> List[str]:
  """Category names with a simplified file at `source` (local folder or gs://), sorted."""
  if is_url(source):
    return _official_categories()
  if not tf.io.gfile.isdir(source):
    raise QuickDrawDataError(
        f'{source}: no such folder. Set QUICKDRAW_SOURCE to a folder (or gs:// / https:// '
        'prefix) holding <category>.ndjson or <category>.ndjson.gz files.')
  names = set()
  for filename in tf.io.gfile.listdir(source):
    for suffix in SIMPLIFIED_SUFFIXES:
      if filename.endswith(suffix):
        names.add(filename[:-len(suffix)])
  if not names:
    raise QuickDrawDataError(
        f'{source}: no <category>.ndjson or <category>.ndjson.gz files in this folder.')
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


def category_path(source: str, category: str) -> str:
  """The file holding `category` at `source`: .ndjson preferred over .ndjson.gz."""
  if is_url(source):
    from components import url_cache  # Imported here: only URL sources need it.
    return url_cache.fetch(source.rstrip('/') + '/' + urllib.parse.quote(category) + '.ndjson')
  for suffix in SIMPLIFIED_SUFFIXES:
    path = os.path.join(source, category + suffix)
    if tf.io.gfile.exists(path):
      return path
  raise QuickDrawDataError(
      f'{source}: category {category!r} has no file {category}.ndjson or {category}.ndjson.gz.')


def _open_lines(path: str) -> Iterator[bytes]:
  with tf.io.gfile.GFile(path, 'rb') as raw:
    stream = gzip.GzipFile(fileobj=raw) if path.endswith('.gz') else raw
    try:
      for line in stream:
        yield line
    except (EOFError, OSError) as e:
      raise QuickDrawDataError(f'{path}: the file is truncated or not valid gzip ({e}).') from e


def parse_drawing(line: bytes, path: str, line_number: int, category: str) -> Drawing:
  """The strokes of one ndjson line, checked; raises with the file and line on bad input."""
  where = f'{path}:{line_number}'
  try:
    record = json.loads(line)
  except ValueError as e:
    raise QuickDrawDataError(f'{where}: not a JSON object ({e}).') from e
  if not isinstance(record, dict) or 'drawing' not in record:
    raise QuickDrawDataError(f'{where}: the line has no "drawing" field.')
  word = record.get('word', category)
  if word != category:
    raise QuickDrawDataError(
        f'{where}: "word" is {word!r} but the file is for category {category!r}.')
  drawing = record['drawing']
  if not isinstance(drawing, list) or not drawing:
    raise QuickDrawDataError(f'{where}: "drawing" is empty or not a list of strokes.')
  for i, stroke in enumerate(drawing):
    if (not isinstance(stroke, list) or len(stroke) < 2 or len(stroke[0]) != len(stroke[1])
        or not stroke[0]):
      raise QuickDrawDataError(
          f'{where}: stroke {i} is not a pair of equally long, non-empty x and y lists.')
    for values in stroke[:2]:
      if any(not isinstance(v, (int, float)) or v < 0 or v > SIMPLIFIED_MAX for v in values):
        raise QuickDrawDataError(
            f'{where}: stroke {i} has coordinates outside 0..{SIMPLIFIED_MAX}; this is not '
            'simplified data (use the official full/simplified files).')
  return [(list(stroke[0]), list(stroke[1])) for stroke in drawing]


@dataclasses.dataclass
class CategorySample:
  """What sampling one category produced and counted."""
  category: str
  path: str
  train: List[Tuple[str, Drawing]]
  test: List[Tuple[str, Drawing]]
  read: int
  duplicates: int


def sample_category(source: str, category: str, train_count: int, test_count: int,
                    seed: int) -> CategorySample:
  """Reads one category file, drops exact duplicates, then draws disjoint train/test sets.

  Drawing ids are `<category>/<line number>` so every example leads back to its source line.
  The draw depends only on (seed, category), not on which other categories were chosen.
  """
  path = category_path(source, category)
  unique, seen, read = [], set(), 0
  for line_number, line in enumerate(_open_lines(path), start=1):
    if not line.strip():
      continue
    read += 1
    drawing = parse_drawing(line, path, line_number, category)
    key = json.dumps(drawing, separators=(',', ':'))
    if key in seen:
      continue
    seen.add(key)
    unique.append((f'{category}/{line_number}', drawing))
  needed = train_count + test_count
  if len(unique) < needed:
    raise QuickDrawDataError(
        f'{path}: {len(unique)} distinct drawings ({read} read, {read - len(unique)} duplicates) '
        f'but {train_count} train + {test_count} test are requested; lower the per-category '
        'counts or choose other categories.')
  chosen = random.Random(f'{seed}:{category}').sample(unique, needed)
  return CategorySample(category=category, path=path, train=chosen[:train_count],
                        test=chosen[train_count:], read=read, duplicates=read - len(unique))


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
