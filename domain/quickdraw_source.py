"""Where a Quick, Draw! source keeps its category files, and how to open them.

A source is a local folder, a gs:// prefix or an https:// prefix (files are downloaded into a
local cache, `domain/url_cache.py`) holding one `<category>.ndjson[.gz]` or
`<category>.npy` file per category.
"""
import difflib
import gzip
import os
import random
import urllib.parse
import zlib
from typing import Iterator, List, Optional, Sequence

import tensorflow as tf

# Suffixes of category files, in order of preference when a category has several.
CATEGORY_SUFFIXES = ('.ndjson', '.ndjson.gz', '.npy')


class QuickDrawDataError(ValueError):
  """Bad source data; the message names the file (and line) and what to do."""


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
  sources are downloaded into the local cache (domain/url_cache.py) first."""
  if is_url(source):
    from domain import url_cache  # Imported here: only URL sources need it.
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


def open_binary(path: str):
  """Python's own file for local paths (3x faster than GFile here), GFile for gs:// and co."""
  return tf.io.gfile.GFile(path, 'rb') if '://' in path else open(path, 'rb')


def file_size(path: str) -> int:
  return tf.io.gfile.stat(path).length if '://' in path else os.path.getsize(path)


def open_lines(path: str) -> Iterator[bytes]:
  """The lines of a (gzipped) text file, streamed; a truncated .gz fails with the line reached."""
  with open_binary(path) as raw:
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
