"""One line of ndjson read strictly: UTF-8 text, finite numbers only, bounded nesting.

Python's json reads NaN, Infinity and -Infinity (no JSON has them), turns 1e999 into inf,
raises a bare ValueError for an integer of more than 4,300 digits (Python's conversion limit),
and recurses once per level of nesting (RecursionError near 1000 levels). Quick, Draw! lines,
from data files and from search queries alike, are read here so none of that gets through.
"""
import json
import math
import re
import sys

import numpy as np

# A Quick, Draw! record nests 4 deep; this leaves room for any sane record and stays far
# below Python's recursion limit.
MAX_DEPTH = 400

# Why a line was refused.
NOT_UTF8 = 'not_utf8'
TOO_DEEP = 'too_deep'
NOT_FINITE = 'not_finite'
MALFORMED = 'malformed'

_ESCAPE = re.compile(rb'\\.', re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b'[]{}')
_OPENING = np.frombuffer(b'[{', dtype=np.uint8)
# Integers count as numbers only as far as a float reaches (1.8e308, 309 digits), like decimals.
_FLOAT_MAX_DIGITS = len(str(int(sys.float_info.max)))


class JsonLineError(ValueError):
  """A line that is not strict JSON; `reason` is one of the reasons above."""

  def __init__(self, reason: str, message: str):
    super().__init__(message)
    self.reason = reason


def nesting_depth(line: bytes) -> int:
  """The deepest nesting of [ and { outside strings, found without parsing."""
  # Escapes go first so every quote left delimits a string; each pass is linear in the line.
  # UTF-8 continuation bytes are >= 0x80, so brackets and quotes are found bytewise.
  brackets = _STRING.sub(b'', _ESCAPE.sub(b'', line)).translate(None, _NOT_BRACKETS)
  codes = np.frombuffer(brackets, dtype=np.uint8)
  return int(np.cumsum(np.where(np.isin(codes, _OPENING), 1, -1)).max(initial=0))


def _refuse_constant(name: str):
  raise JsonLineError(NOT_FINITE, f'{name} is not a finite number (JSON has no NaN or '
                      'Infinity)')


def _float_sized_int(text: str) -> int:
  # The digits are counted before converting: Python refuses to convert more than 4,300.
  digits = len(text.lstrip('-'))
  if digits > _FLOAT_MAX_DIGITS or abs(value := int(text)) > sys.float_info.max:
    raise JsonLineError(NOT_FINITE, f'an integer of {digits} digits is not a finite number '
                        '(too large for a float)')
  return value


def _finite_float(text: str) -> float:
  value = float(text)
  if not math.isfinite(value):
    raise JsonLineError(NOT_FINITE, f'{text} is not a finite number (too large for a float)')
  return value


def loads(line: bytes):
  """The value of one JSON line; a UTF-8 byte order mark at its start is skipped."""
  try:
    text = line.decode('utf-8-sig')
  except UnicodeDecodeError as e:
    raise JsonLineError(NOT_UTF8, f'not UTF-8 text (byte 0x{line[e.start]:02x} at column '
                        f'{e.start + 1}); save it as UTF-8') from None
  if '\x00' in text:  # UTF-16 and UTF-32 put NUL bytes next to ASCII characters.
    raise JsonLineError(NOT_UTF8, 'not UTF-8 text (it has NUL bytes, like UTF-16); save it '
                        'as UTF-8')
  # Counting brackets is cheap; only a line with many of them is scanned for its depth.
  if line.count(b'[') + line.count(b'{') > MAX_DEPTH:
    depth = nesting_depth(line)
    if depth > MAX_DEPTH:
      raise JsonLineError(TOO_DEEP, f'the nesting is too deep ({depth} levels of [ and {{; '
                          f'at most {MAX_DEPTH})')
  try:
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                      parse_int=_float_sized_int)
  except json.JSONDecodeError as e:
    raise JsonLineError(MALFORMED, f'not a JSON object ({e})') from None
