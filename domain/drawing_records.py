"""One ndjson line of a category file to checked strokes, or the reason it cannot be used.

Simplified strokes are [x, y] lists in 0..255; raw strokes are [x, y, t] in screen pixels and
are simplified here the way Google describes it (`domain/stroke_simplification.py`).

A line that is read but not used has a reason, a key of the manifest's skip counts:
malformed_json, no_drawing, empty_drawing, bad_stroke, stroke_xy_length_mismatch,
non_finite_number, coordinates_out_of_range or word_mismatch.
"""
import math
from typing import List, Tuple, Union

from domain import strict_json
from domain import stroke_simplification
from domain.quickdraw_source import QuickDrawDataError

# Simplified drawings are aligned and scaled by Google to this coordinate range.
SIMPLIFIED_MAX = 255
# Raw coordinates are screen pixels; a bound far beyond any screen keeps simplification finite.
RAW_MAX = 2 ** 31
BITMAP_SIDE = 28  # numpy_bitmap rows are 28x28 images.

Drawing = List[Tuple[List[int], List[int]]]
_NUMBER_TYPES = {int, float}  # Not bool: JSON true/false are no coordinates.
# A sampled item: strokes (ndjson formats) or the 784 bytes of a 28x28 bitmap row.
Item = Union[Drawing, bytes]


class SkipLine(Exception):
  """One unusable line: `reason` (see above) for the manifest, `message` says what is wrong."""

  def __init__(self, reason: str, message: str):
    super().__init__(message)
    self.reason = reason


def _checked_strokes(drawing, raw: bool) -> Drawing:
  """The (x, y) lists of each stroke, checked; `raw` strokes may carry t and any coordinates."""
  if not isinstance(drawing, list) or not drawing:
    raise SkipLine('empty_drawing', '"drawing" is empty or not a list of strokes.')
  strokes = []
  for i, stroke in enumerate(drawing):
    if (not isinstance(stroke, list) or len(stroke) not in ((2, 3) if raw else (2,))
        or not all(isinstance(v, list) for v in stroke)):
      raise SkipLine('bad_stroke', f'stroke {i} is not a pair of x and y lists' +
                     (' (plus t)' if raw else '') + '.')
    xs, ys = stroke[0], stroke[1]
    if len(xs) != len(ys):
      raise SkipLine('stroke_xy_length_mismatch',
                     f'stroke {i} is not a pair of equally long, non-empty x and y lists '
                     f'({len(xs)} x values, {len(ys)} y values).')
    if not xs:
      raise SkipLine('bad_stroke', f'stroke {i} is not a pair of equally long, non-empty x '
                     'and y lists (it has no points).')
    for values in (xs, ys):
      # Set, min and max run in C: this check is most of the reading time otherwise.
      types = set(map(type, values))
      if not types <= _NUMBER_TYPES:
        raise SkipLine('bad_stroke', f'stroke {i} has coordinates that are not numbers.')
      # Checked before min and max, which NaN misleads; ints are finite (and may be too
      # large for a float, which the range checks refuse).
      if float in types and not all(type(v) is int or math.isfinite(v) for v in values):
        raise SkipLine('non_finite_number',
                       f'stroke {i} has coordinates that are not finite numbers (NaN or '
                       'infinite).')
      if raw and (min(values) < -RAW_MAX or max(values) > RAW_MAX):
        raise SkipLine('coordinates_out_of_range',
                       f'stroke {i} has coordinates beyond +-{RAW_MAX}, far outside any screen.')
      if not raw and (min(values) < 0 or max(values) > SIMPLIFIED_MAX):
        raise SkipLine(
            'coordinates_out_of_range',
            f'stroke {i} has coordinates outside 0..{SIMPLIFIED_MAX}; this is not simplified '
            'data (raw files carry x, y and t per stroke and are simplified on reading).')
    strokes.append((list(xs), list(ys)))
  return strokes


def is_raw(record) -> bool:
  """Raw ndjson strokes are [x, y, t]; simplified ones are [x, y]."""
  drawing = record.get('drawing') if isinstance(record, dict) else None
  return (isinstance(drawing, list) and bool(drawing) and isinstance(drawing[0], list)
          and len(drawing[0]) == 3)


def parse_record(line: bytes):
  """The JSON value of a line: UTF-8, finite numbers only, nested at most 400 deep."""
  try:
    return strict_json.loads(line)
  except strict_json.JsonLineError as e:
    reason = 'non_finite_number' if e.reason == strict_json.NOT_FINITE else 'malformed_json'
    raise SkipLine(reason, f'{e}.') from e


def checked_drawing(record, category: str, raw: bool) -> Drawing:
  """The strokes of a parsed record, simplified when `raw`; SkipLine says why not."""
  if not isinstance(record, dict):
    raise SkipLine('malformed_json', 'not a JSON object.')
  if 'drawing' not in record:
    raise SkipLine('no_drawing', 'the line has no "drawing" field.')
  word = record.get('word', category)
  if word != category:
    raise SkipLine('word_mismatch',
                   f'"word" is {word!r} but the file is for category {category!r}.')
  strokes = _checked_strokes(record['drawing'], raw)
  return stroke_simplification.simplify(strokes) if raw else strokes


def parse_drawing(line: bytes, path: str, line_number: int, category: str,
                  raw: bool = False) -> Drawing:
  """The strokes of one ndjson line, checked; raises with the file and line on bad input."""
  try:
    record = parse_record(line)
  except SkipLine as e:
    raise QuickDrawDataError(f'{path}:{line_number}: {e}') from e
  return record_drawing(record, f'{path}:{line_number}', category, raw)


def record_drawing(record, where: str, category: str, raw: bool = False) -> Drawing:
  """The strokes of a parsed ndjson record, checked; raises naming `where` on bad input."""
  try:
    return checked_drawing(record, category, raw)
  except SkipLine as e:
    raise QuickDrawDataError(f'{where}: {e}') from e
