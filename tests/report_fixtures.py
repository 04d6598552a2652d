"""Helpers of the report tests: reading the Markdown's tables and figure links, and a PNG."""
import io
import re

import numpy as np

FIGURE_LINK = re.compile(r'!\[[^\]]*\]\((figures/[^)]+\.png)\)')


def table_row(markdown: str, first_cell: str):
  """The cells of the first table row whose first cell is `first_cell`."""
  for line in markdown.splitlines():
    cells = [c.strip() for c in line.strip().strip('|').split('|')]
    if line.startswith('|') and cells and cells[0] == first_cell:
      return cells
  raise AssertionError(f'no table row starting with {first_cell!r}')


def line_of(markdown: str, text: str) -> int:
  return next(i for i, line in enumerate(markdown.splitlines()) if text in line)


def interval(value, ci95, percent):
  """A value and its interval as the report writes them."""
  if percent:
    return f'{value:.1%} [{ci95[0] * 100:.1f}, {ci95[1] * 100:.1f}]'
  return f'{value:.3f} [{ci95[0]:.3f}, {ci95[1]:.3f}]'


def png(rng, size=16):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, size=(size, size)).astype(np.uint8)).save(buffer, 'PNG')
  return buffer.getvalue()
