"""Reading, validating, deduplicating, sampling and rendering category files."""
import io
import json
import random

import numpy as np
from PIL import Image
import pytest

from components.example_gen import category_sampling
from domain import drawing_records
from domain import drawing_rendering
from domain import quickdraw_source
from domain import strict_json
from tests.conftest import make_synthetic_source, write_category

GOOD = [[[0, 10, 20], [0, 10, 0]]]


def test_list_and_choose_categories_are_seeded_and_sorted(tmp_path):
  source = make_synthetic_source(str(tmp_path), categories=('a', 'b b', 'C', 'd', 'e'),
                                 per_category=3, duplicates=0)
  available = quickdraw_source.list_categories(source)
  assert available == ['C', 'a', 'b b', 'd', 'e']
  first = quickdraw_source.choose_categories(available, 3, seed=1)
  assert first == quickdraw_source.choose_categories(available, 3, seed=1) == sorted(first)
  assert len(set(first)) == 3 and set(first) <= set(available)
  assert any(quickdraw_source.choose_categories(available, 3, seed=s) != first for s in range(2, 9))


def test_sampling_drops_duplicates_and_keeps_splits_disjoint(tmp_path):
  write_category(str(tmp_path), 'cat', [[[[i, i + 1], [0, 5]]] for i in range(30)] * 2)
  sample = category_sampling.sample_category(str(tmp_path), 'cat', 20, 10, seed=3)
  assert (sample.read, sample.duplicates) == (60, 30)
  train = {json.dumps(d) for _, d in sample.train}
  test = {json.dumps(d) for _, d in sample.test}
  assert len(train) == 20 and len(test) == 10 and not train & test
  again = category_sampling.sample_category(str(tmp_path), 'cat', 20, 10, seed=3)
  assert again.train == sample.train and again.test == sample.test
  other = category_sampling.sample_category(str(tmp_path), 'cat', 20, 10, seed=4)
  assert other.train != sample.train


def test_drawing_ids_lead_back_to_the_source_line(tmp_path):
  write_category(str(tmp_path), 'cat', [[[[i], [i]]] for i in range(5)])
  sample = category_sampling.sample_category(str(tmp_path), 'cat', 3, 2, seed=0)
  for drawing_id, drawing in sample.train + sample.test:
    line = int(drawing_id.split('/')[1])
    assert drawing == [([line - 1], [line - 1])]


def test_gzip_files_are_read(tmp_path):
  write_category(str(tmp_path), 'dog', [[[[i, 3], [4, i]]] for i in range(8)], gz=True)
  assert category_sampling.sample_category(str(tmp_path), 'dog', 5, 3, seed=0).read == 8


@pytest.mark.parametrize('line, message', [
    ('{"word": "cat", "drawing": [[[1, 2], [3', 'cat.ndjson:2: not a JSON object'),
    ('{"word": "cat"}', 'cat.ndjson:2: the line has no "drawing" field'),
    ('{"word": "cat", "drawing": []}', 'cat.ndjson:2: "drawing" is empty'),
    ('{"word": "cat", "drawing": [[[1, 2], [3]]]}', 'cat.ndjson:2: stroke 0 is not a pair'),
    ('{"word": "cat", "drawing": [[[1, 900], [3, 4]]]}', 'cat.ndjson:2: stroke 0 has coordinates'),
    ('{"word": "dog", "drawing": [[[1, 2], [3, 4]]]}', "cat.ndjson:2: \"word\" is 'dog'"),
    ('{"word": "cat", "drawing": [[[1, NaN], [3, 4]]]}', 'cat.ndjson:2: NaN is not a finite'),
    ('{"word": "cat", "drawing": ' + '[' * 2000 + ']' * 2000 + '}',
     'cat.ndjson:2: the nesting is too deep'),
])
def test_bad_lines_fail_with_file_and_line(tmp_path, line, message):
  write_category(str(tmp_path), 'cat', [GOOD], extra_lines=[line])
  with pytest.raises(quickdraw_source.QuickDrawDataError, match=message):
    category_sampling.sample_category(str(tmp_path), 'cat', 1, 0, seed=0)


def test_parsed_records_with_nan_or_infinite_coordinates_are_refused():
  for bad in (float('nan'), float('inf'), -float('inf')):
    # First, last, or after an int too large for a float: min and max alone would miss it.
    for xs in ([bad, 1, 2], [1, 2, bad], [10 ** 400, bad, 1]):
      with pytest.raises(quickdraw_source.QuickDrawDataError,
                         match=r'^q:4: stroke 1 has coordinates that are not finite'):
        drawing_records.record_drawing({'drawing': GOOD + [[[1, 2, 3], xs]]}, 'q:4', None)
  assert drawing_records.record_drawing({'drawing': GOOD}, 'q:4', None) == [tuple(GOOD[0])]


def _random_json(rng, depth):
  if depth == 0 or rng.random() < 0.2:
    return rng.choice([1, -2.5, None, True, 'a[{"]}\\', '\\"[', '\u00e9[{', ''])
  if rng.random() < 0.5:
    return [_random_json(rng, depth - 1) for _ in range(rng.randint(0, 3))]
  return {f'k{i}[': _random_json(rng, depth - 1) for i in range(rng.randint(0, 3))}


def _depth(value):
  children = value if isinstance(value, list) else (
      value.values() if isinstance(value, dict) else None)
  if children is None:
    return 0
  return 1 + max(map(_depth, children), default=0)


def test_nesting_depth_counts_brackets_outside_strings_only():
  rng = random.Random(0)
  for _ in range(300):
    value = _random_json(rng, rng.randint(0, 12))
    for ensure_ascii in (True, False):
      line = json.dumps(value, ensure_ascii=ensure_ascii).encode()
      assert strict_json.nesting_depth(line) == _depth(value), line
      assert strict_json.loads(line) == value


def test_too_few_distinct_drawings_names_the_counts(tmp_path):
  write_category(str(tmp_path), 'cat', [GOOD] * 4)
  with pytest.raises(quickdraw_source.QuickDrawDataError,
                     match=r'1 distinct drawings \(4 read, 3 duplicates\) but 1 train \+ 1 test'):
    category_sampling.sample_category(str(tmp_path), 'cat', 1, 1, seed=0)


def test_missing_category_and_empty_or_missing_folder(tmp_path):
  with pytest.raises(quickdraw_source.QuickDrawDataError, match='no <category>.ndjson'):
    quickdraw_source.list_categories(str(tmp_path))
  with pytest.raises(quickdraw_source.QuickDrawDataError, match='no such folder'):
    quickdraw_source.list_categories(str(tmp_path / 'absent'))
  with pytest.raises(quickdraw_source.QuickDrawDataError, match="category 'cat' has no file"):
    quickdraw_source.category_path(str(tmp_path), 'cat')
  with pytest.raises(quickdraw_source.QuickDrawDataError, match='3 categories requested'):
    quickdraw_source.choose_categories(['a', 'b'], 3, seed=0)


def test_truncated_gzip_is_reported(tmp_path):
  path = write_category(str(tmp_path), 'cat', [GOOD] * 200, gz=True)
  data = open(path, 'rb').read()
  open(path, 'wb').write(data[:len(data) // 2])
  with pytest.raises(quickdraw_source.QuickDrawDataError, match='truncated'):
    category_sampling.sample_category(str(tmp_path), 'cat', 1, 0, seed=0)


def test_render_png_draws_black_strokes_on_white():
  png = drawing_rendering.render_png([([0, 255], [128, 128])], size=64, stroke_width=3)
  image = Image.open(io.BytesIO(png))
  assert image.mode == 'L' and image.size == (64, 64)
  assert image.getpixel((32, 32)) == 0 and image.getpixel((32, 5)) == 255
  dot = Image.open(io.BytesIO(drawing_rendering.render_png([([10], [10])], size=64)))
  assert np.array(dot).min() == 0  # A one-point stroke still leaves ink.
