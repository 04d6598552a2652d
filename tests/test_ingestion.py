"""Ingestion of real sources: formats detected per file, streaming sampling, every bad input.

Each bad-input case of issue 3 is here with a small file made in the test and its decided
behaviour: a counted skip (failing past max_skip_ratio) or an error naming file, line and fix.
"""
import gzip
import io
import json
import os
import random
import re
import sys

import numpy as np
from PIL import Image
import pytest

from components.example_gen import category_sampling
from domain import drawing_rendering
from domain import quickdraw_source
from domain import strict_json
from domain import stroke_simplification
from tests.conftest import ROOT, write_category

SHARED = os.path.normpath(os.path.join(ROOT, '..', 'shared', 'quickdraw'))
WITH_METADATA = os.path.join(SHARED, 'simplified-with-metadata')
NUMPY_BITMAP = os.path.join(SHARED, 'numpy_bitmap')


def _distinct_drawings(count, seed=0):
  rng = random.Random(seed)
  return [[[[rng.randint(0, 255) for _ in range(3)], [rng.randint(0, 255) for _ in range(3)]]]
          for _ in range(count)]


def _write_lines(folder, filename, records):
  path = os.path.join(folder, filename)
  data = ''.join((r if isinstance(r, str) else json.dumps(r)) + '\n' for r in records).encode()
  with open(path, 'wb') as f:
    f.write(gzip.compress(data) if filename.endswith('.gz') else data)
  return path


# The bad lines of issue 3 that are skipped and counted, by the reason the manifest gives.
BAD_LINES = {
    'malformed_json': '{"word": "cat", "drawing": [[[1, 2], [3',
    'no_drawing': '{"word": "cat", "countrycode": "DE"}',
    'empty_drawing': '{"word": "cat", "drawing": []}',
    'stroke_xy_length_mismatch': '{"word": "cat", "drawing": [[[1, 2, 3], [3, 4]]]}',
    'coordinates_out_of_range': '{"word": "cat", "drawing": [[[1, 256], [3, 4]]]}',
    'word_mismatch': '{"word": "dog", "drawing": [[[1, 2], [3, 4]]]}',
}


@pytest.mark.parametrize('reason', sorted(BAD_LINES))
def test_a_bad_line_is_skipped_and_counted_by_reason(tmp_path, reason):
  # 200 good lines and one bad one at line 101: 0.5% skipped, below the default 1%.
  good = _distinct_drawings(200)
  write_category(str(tmp_path), 'cat', good[:100], extra_lines=[BAD_LINES[reason]])
  with open(tmp_path / 'cat.ndjson', 'a') as f:
    f.writelines(json.dumps({'word': 'cat', 'drawing': d}) + '\n' for d in good[100:])
  sample = category_sampling.sample_category(str(tmp_path), 'cat', 20, 10, seed=1)
  assert sample.read == 201 and sample.skipped == {reason: 1}
  assert sample.first_skipped[reason].startswith(f'{tmp_path}/cat.ndjson:101: ')
  assert len(sample.train) == 20 and len(sample.test) == 10
  row = sample.manifest_row()
  assert row['skipped_total'] == 1 and row['skipped'] == {reason: 1}
  # The same file with no tolerance fails, naming the file, the line, the reason and the fix.
  with pytest.raises(quickdraw_source.QuickDrawDataError,
                     match=rf'cat.ndjson: 1 of 201 lines skipped.*{reason}: 1 \(first '
                           rf'.*cat.ndjson:101: .*raise max_skip_ratio'):
    category_sampling.sample_category(str(tmp_path), 'cat', 20, 10, seed=1, max_skip_ratio=0.0)


# Lines Python's json would read but no drawing may come from: counted skips like the above.
STRICT_LINES = [
    (b'{"word": "cat", "drawing": [[[1, NaN], [3, 4]]]}', 'non_finite_number',
     'NaN is not a finite number'),
    (b'{"word": "cat", "drawing": [[[1, 2], [3, -Infinity]]]}', 'non_finite_number',
     '-Infinity is not a finite number'),
    (b'{"word": "cat", "drawing": [[[1, 1e999], [3, 4]]]}', 'non_finite_number',
     '1e999 is not a finite number'),
    (b'{"word": "cat", "drawing": [[[1, ' + b'7' * 4301 + b'], [3, 4]]]}', 'non_finite_number',
     'an integer of 4301 digits is not a finite number'),
    (b'{"word": "cat", "drawing": ' + b'[' * 100_000 + b']' * 100_000 + b'}', 'malformed_json',
     r'the nesting is too deep \(100001 levels'),
    (b'{"word": "cat", "drawing": ' + b'[' * 401 + b']' * 401 + b'}', 'malformed_json',
     r'the nesting is too deep \(402 levels'),
    (b'{"word": "cat", "key_id": "\xe9", "drawing": [[[1, 2], [3, 4]]]}', 'malformed_json',
     r'not UTF-8 text \(byte 0xe9 at column 28\)'),
]


@pytest.mark.parametrize('line, reason, message', STRICT_LINES)
def test_non_finite_deeply_nested_or_non_utf8_lines_are_skipped_and_counted(
    tmp_path, line, reason, message):
  good = [json.dumps({'word': 'cat', 'drawing': d}).encode() for d in _distinct_drawings(200)]
  (tmp_path / 'cat.ndjson').write_bytes(b'\n'.join(good[:100] + [line] + good[100:]) + b'\n')
  sample = category_sampling.sample_category(str(tmp_path), 'cat', 150, 50, seed=1)
  assert sample.read == 201 and sample.skipped == {reason: 1}
  assert re.match(rf'{re.escape(str(tmp_path))}/cat.ndjson:101: {message}',
                  sample.first_skipped[reason])
  # All 200 good drawings were sampled, and nothing else.
  assert sorted(int(i.split('/')[1]) for i, _ in sample.train + sample.test) == (
      list(range(1, 101)) + list(range(102, 202)))
  with pytest.raises(quickdraw_source.QuickDrawDataError, match=rf'{reason}: 1 \(first .*'
                                                              rf'cat.ndjson:101: {message}'):
    category_sampling.sample_category(str(tmp_path), 'cat', 20, 10, seed=1, max_skip_ratio=0.0)


def test_integers_count_as_numbers_only_as_far_as_a_float_reaches():
  """Python refuses to convert an integer of over 4,300 digits with a bare ValueError; strict
  JSON refuses anything past a float's range by its digits first, as not finite."""
  largest = int(sys.float_info.max)
  assert strict_json.loads(f'[{largest}, -{largest}, 7]'.encode()) == [largest, -largest, 7]
  for text in (str(largest + 1), '-' + str(largest + 1), '1' + '0' * 309, '9' * 4301,
               '-' + '9' * 100_000):
    with pytest.raises(strict_json.JsonLineError, match=rf'an integer of {len(text.lstrip("-"))} '
                       'digits is not a finite number') as raised:
      strict_json.loads(f'{{"drawing": [[[{text}], [1]]]}}'.encode())
    assert raised.value.reason == strict_json.NOT_FINITE


def test_skips_above_the_ratio_fail_with_every_reason_counted(tmp_path):
  lines = [BAD_LINES['malformed_json']] * 3 + [BAD_LINES['word_mismatch']] * 2
  write_category(str(tmp_path), 'cat', _distinct_drawings(45), extra_lines=lines)
  with pytest.raises(quickdraw_source.QuickDrawDataError,
                     match=r'5 of 50 lines skipped, more than max_skip_ratio 0.05 allows\. '
                           r'malformed_json: 3 \(first .*cat.ndjson:46: not a JSON object.*\); '
                           r'word_mismatch: 2 \(first .*cat.ndjson:49: "word" is \'dog\''):
    category_sampling.sample_category(str(tmp_path), 'cat', 5, 5, seed=0, max_skip_ratio=0.05)
  sample = category_sampling.sample_category(str(tmp_path), 'cat', 5, 5, seed=0, max_skip_ratio=0.1)
  assert sample.skipped == {'malformed_json': 3, 'word_mismatch': 2}


def test_truncated_gzip_fails_with_the_line_reached_and_the_fix(tmp_path):
  path = write_category(str(tmp_path), 'cat', _distinct_drawings(400), gz=True)
  data = open(path, 'rb').read()
  open(path, 'wb').write(data[:len(data) // 2])
  with pytest.raises(quickdraw_source.QuickDrawDataError,
                     match=r'cat.ndjson.gz:\d+: the file is truncated .* after line \d+ .*'
                           r'Download it again'):
    category_sampling.sample_category(str(tmp_path), 'cat', 1, 0, seed=0)


@pytest.mark.parametrize('array, found', [
    (np.zeros((4, 784), dtype=np.float32), 'dtype float32 and shape (4, 784)'),
    (np.zeros((4, 28, 28), dtype=np.uint8), 'dtype uint8 and shape (4, 28, 28)'),
    (np.zeros((4, 783), dtype=np.uint8), 'dtype uint8 and shape (4, 783)'),
])
def test_npy_of_the_wrong_dtype_or_row_length_fails_with_the_fix(tmp_path, array, found):
  np.save(tmp_path / 'cat.npy', array)
  with pytest.raises(quickdraw_source.QuickDrawDataError,
                     match=rf'cat.npy: numpy_bitmap files hold uint8 rows of 784 .*'
                           rf'{re.escape(found)}.*np.save'):
    category_sampling.sample_category(str(tmp_path), 'cat', 1, 0, seed=0)


def test_npy_shorter_than_its_header_fails(tmp_path):
  path = tmp_path / 'cat.npy'
  np.save(path, np.full((10, 784), 7, dtype=np.uint8))
  data = open(path, 'rb').read()
  open(path, 'wb').write(data[:-784 * 3])
  with pytest.raises(quickdraw_source.QuickDrawDataError, match=r'announces 10 rows but the file '
                                                              r'ends in row 8'):
    category_sampling.sample_category(str(tmp_path), 'cat', 1, 0, seed=0)


def test_a_missing_category_names_close_matches(tmp_path):
  write_category(str(tmp_path), 'The Eiffel Tower', _distinct_drawings(3))
  with pytest.raises(quickdraw_source.QuickDrawDataError,
                     match=r"category 'the eiffel tower' has no file .*case-sensitive.*"
                           r"Did you mean 'The Eiffel Tower'\?"):
    category_sampling.sample_category(str(tmp_path), 'the eiffel tower', 1, 0, seed=0)


def test_a_folder_without_category_files_is_refused(tmp_path):
  (tmp_path / 'notes.txt').write_text('not a category file')
  with pytest.raises(quickdraw_source.QuickDrawDataError,
                     match=r'no <category>.ndjson, <category>.ndjson.gz or <category>.npy'):
    quickdraw_source.list_categories(str(tmp_path))


def test_official_line_format_is_read_with_all_fields_and_the_recognized_filter(tmp_path):
  records = [{'word': 'The Eiffel Tower', 'countrycode': 'FR', 'timestamp': '2017-03-01 1:2:3 UTC',
              'recognized': i % 4 != 0, 'key_id': str(5000 + i), 'drawing': d}
             for i, d in enumerate(_distinct_drawings(40))]
  _write_lines(str(tmp_path), 'The Eiffel Tower.ndjson.gz', records)
  sample = category_sampling.sample_category(str(tmp_path), 'The Eiffel Tower', 10, 5, seed=0)
  assert sample.format == category_sampling.SIMPLIFIED and sample.not_recognized == 0
  assert sample.fields == ['countrycode', 'drawing', 'key_id', 'recognized', 'timestamp', 'word']
  filtered = category_sampling.sample_category(str(tmp_path), 'The Eiffel Tower', 10, 5, seed=0,
                                               recognized_only=True)
  assert filtered.not_recognized == 10 and filtered.read == 40 and filtered.skipped == {}
  kept_lines = {int(i.split('/')[1]) for i, _ in filtered.train + filtered.test}
  assert all(records[line - 1]['recognized'] for line in kept_lines)


@pytest.mark.skipif(not os.path.isdir(WITH_METADATA), reason='shared mirror not present')
def test_the_shared_official_files_with_metadata(tmp_path):
  lines = open(os.path.join(WITH_METADATA, 'cat.ndjson'), encoding='utf-8').read().splitlines()
  records = [json.loads(l) for l in lines]
  sample = category_sampling.sample_category(WITH_METADATA, 'cat', 10, 5, seed=0,
                                             recognized_only=True)
  assert sample.read == len(records) and sample.skipped == {}
  assert sample.not_recognized == sum(not r['recognized'] for r in records)
  assert sample.fields == sorted(records[0])
  for drawing_id, strokes in sample.train + sample.test:
    assert strokes == [tuple(s) for s in records[int(drawing_id.split('/')[1]) - 1]['drawing']]


def _raw_record(strokes, word='cat'):
  return {'word': word, 'drawing': [[xs, ys, list(range(len(xs)))] for xs, ys in strokes]}


def test_raw_strokes_are_simplified_never_passed_through(tmp_path):
  # Densely sampled arcs of ellipses (200 points each) of random shape and place, as a
  # tablet records them.
  rng = random.Random(0)
  records = []
  for _ in range(12):
    cx, cy = rng.uniform(-300, 900), rng.uniform(100, 1200)
    rx, ry = rng.uniform(50, 600), rng.uniform(50, 600)
    angles = np.linspace(rng.uniform(0, 3), 5, 200)
    records.append(_raw_record([((cx + rx * np.cos(angles)).tolist(),
                                 (cy + ry * np.sin(angles)).tolist())]))
  _write_lines(str(tmp_path), 'cat.ndjson', records)
  sample = category_sampling.sample_category(str(tmp_path), 'cat', 8, 4, seed=0)
  assert sample.format == category_sampling.RAW and sample.skipped == {}
  for _, strokes in sample.train + sample.test:
    values = [v for xs, ys in strokes for v in xs + ys]
    assert all(isinstance(v, int) and 0 <= v <= 255 for v in values)
    # Aligned to 0 and scaled so the longer side spans 255, up to what resampling and RDP
    # (epsilon 2) move the extreme points.
    assert min(min(xs) for xs, _ in strokes) <= 2 and min(min(ys) for _, ys in strokes) <= 2
    assert max(values) >= 253
    assert 8 < sum(len(xs) for xs, _ in strokes) < 60  # RDP dropped most points.


@pytest.mark.parametrize('bad, reason, message', [
    (float('nan'), 'non_finite_number', 'NaN is not a finite number'),
    (float('inf'), 'non_finite_number', 'Infinity is not a finite number'),
    (1e308, 'coordinates_out_of_range', 'stroke 0 has coordinates beyond'),
    (10 ** 400, 'non_finite_number', 'an integer of 401 digits is not a finite number'),
], ids=['nan', 'inf', 'huge-float', 'huge-int'])
def test_raw_strokes_with_non_finite_or_absurd_coordinates_are_skipped_never_converted(
    tmp_path, bad, reason, message):
  records = [_raw_record([([i, 40, 90 + i], [0, 30 + i, 10])]) for i in range(99)]
  # json.dumps writes NaN and Infinity as such; with -1e308 the drawing's span overflows a float.
  records.insert(50, _raw_record([([0, bad, -1e308], [0, 1, 2])]))
  path = tmp_path / 'cat.ndjson'
  path.write_text(''.join(json.dumps(r) + '\n' for r in records))
  sample = category_sampling.sample_category(str(tmp_path), 'cat', 40, 20, seed=0,
                                             max_skip_ratio=0.05)
  assert sample.format == category_sampling.RAW and sample.skipped == {reason: 1}
  assert sample.first_skipped[reason].startswith(f'{path}:51: {message}')
  values = [v for _, strokes in sample.train + sample.test for xs, ys in strokes for v in xs + ys]
  assert all(isinstance(v, int) and 0 <= v <= 255 for v in values)


def test_simplification_of_known_shapes():
  # A straight line sampled densely keeps its two ends; an L keeps its corner.
  line = stroke_simplification.simplify([(list(range(0, 1001, 10)), [v / 2 for v in
                                                                      range(0, 1001, 10)])])
  assert line == [([0, 255], [0, 128])]
  corner = stroke_simplification.simplify([([0, 250, 500, 500, 500], [0, 0, 0, 250, 500])])
  assert corner == [([0, 255, 255], [0, 0, 255])]
  assert stroke_simplification.simplify([([7], [9])]) == [([0], [0])]  # A dot stays a dot.


def _reference_rdp(points, epsilon):
  """Recursive Ramer-Douglas-Peucker, independent of shapely. Like GEOS it measures the
  distance to the segment between the ends (not to its infinite line), which matters where a
  stroke turns back beyond an end."""
  start, end = points[0], points[-1]
  direction = end - start
  length2 = float(direction @ direction)
  along = np.clip((points - start) @ direction / length2, 0, 1) if length2 else 0 * points[:, 0]
  distances = np.hypot(*(points - start - along[:, None] * direction).T)
  index = int(np.argmax(distances[1:-1])) + 1 if len(points) > 2 else 0
  if len(points) > 2 and distances[index] > epsilon:
    return np.vstack([_reference_rdp(points[:index + 1], epsilon)[:-1],
                      _reference_rdp(points[index:], epsilon)])
  return np.vstack([start, end])


def test_rdp_matches_a_reference_implementation():
  rng = np.random.default_rng(0)
  for _ in range(50):
    points = np.cumsum(rng.normal(0, 3, size=(rng.integers(3, 60), 2)), axis=0)
    np.testing.assert_allclose(stroke_simplification.rdp(points, 2.0),
                               _reference_rdp(points, 2.0))


def test_resampling_spaces_points_one_pixel_apart():
  points = stroke_simplification.resample(np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 3.5]]))
  steps = np.hypot(*np.diff(points, axis=0).T)
  np.testing.assert_allclose(steps[:-1], 1.0)
  assert steps[-1] <= 1.0 and points[-1].tolist() == [10.0, 3.5] and len(points) == 15


def test_numpy_bitmap_rows_are_sampled_deduplicated_and_rendered(tmp_path):
  rng = np.random.default_rng(0)
  rows = rng.integers(0, 256, size=(30, 784), dtype=np.uint8)
  rows[5] = 0  # A blank row: skipped as an empty drawing.
  np.save(tmp_path / 'The Eiffel Tower.npy', np.vstack([rows, rows[:4]]))
  sample = category_sampling.sample_category(str(tmp_path), 'The Eiffel Tower', 20, 9, seed=0,
                                             max_skip_ratio=0.05)
  assert sample.format == category_sampling.BITMAP
  assert (sample.read, sample.duplicates, sample.skipped) == (34, 4, {'empty_drawing': 1})
  for drawing_id, row in sample.train + sample.test:
    assert row == rows[int(drawing_id.split('/')[1]) - 1].tobytes()
  ink = np.zeros((28, 28), dtype=np.uint8)
  ink[10:18, 3:25] = 255  # White ink on black, as numpy_bitmap stores it.
  image = np.array(Image.open(io.BytesIO(drawing_rendering.render_item(ink.tobytes(), 256))))
  assert image.shape == (256, 256)
  assert image[int(14 * 256 / 28), 128] == 0 and image[10, 10] == 255  # Black ink on white.


@pytest.mark.skipif(not os.path.isdir(NUMPY_BITMAP), reason='shared mirror not present')
def test_the_shared_numpy_bitmap_files():
  array = np.load(os.path.join(NUMPY_BITMAP, 'cat.npy'), mmap_mode='r')
  sample = category_sampling.sample_category(NUMPY_BITMAP, 'cat', 20, 10, seed=0)
  assert sample.read == len(array) and sample.format == category_sampling.BITMAP
  distinct = len({row.tobytes() for row in array})
  assert sample.duplicates == len(array) - distinct


def test_sample_is_independent_of_line_order_and_stable_in_test_as_train_grows(tmp_path):
  drawings = _distinct_drawings(80)
  shuffled = drawings[:]
  random.Random(1).shuffle(shuffled)
  os.makedirs(tmp_path / 'a')
  os.makedirs(tmp_path / 'b')
  write_category(str(tmp_path / 'a'), 'cat', drawings)
  write_category(str(tmp_path / 'b'), 'cat', shuffled + shuffled[:10])  # Plus duplicates.
  first = category_sampling.sample_category(str(tmp_path / 'a'), 'cat', 20, 10, seed=3)
  second = category_sampling.sample_category(str(tmp_path / 'b'), 'cat', 20, 10, seed=3)
  assert second.duplicates == 10
  assert [d for _, d in first.train] == [d for _, d in second.train]
  assert [d for _, d in first.test] == [d for _, d in second.test]
  larger = category_sampling.sample_category(str(tmp_path / 'a'), 'cat', 40, 10, seed=3)
  assert larger.test == first.test and larger.train[:20] == first.train


def test_bottom_k_keeps_k_items_and_samples_uniformly():
  sampler = category_sampling.BottomK(5, salt='0:x')  # pylint: disable=protected-access
  for i in range(5000):
    sampler.offer(str(i % 1000).encode(), i, str(i), i)
  assert len(sampler.sample()) == 5 and sampler.seen == 5000 and sampler.distinct() == 1000
  counts = np.zeros(20)
  for seed in range(2000):
    sampler = category_sampling.BottomK(5, salt=f'{seed}:x')  # pylint: disable=protected-access
    for i in range(20):
      sampler.offer(bytes([i]), i, str(i), i)
    for _, item in sampler.sample():
      counts[item] += 1
  # Each of 20 items lands in a 5-sample with probability 1/4: 500 of 2000 (sd ~19).
  assert np.all(np.abs(counts - 500) < 100), counts


def test_xy_strokes_beyond_255_are_refused_not_taken_as_simplified(tmp_path):
  # Raw-looking coordinates without t: not simplified data, and not recognizable as raw.
  records = [{'word': 'cat', 'drawing': [[[0, 300 + i], [0, 700]]]} for i in range(10)]
  _write_lines(str(tmp_path), 'cat.ndjson', records)
  with pytest.raises(quickdraw_source.QuickDrawDataError,
                     match=r'10 of 10 lines skipped.*coordinates_out_of_range: 10 .*cat.ndjson:1: '
                           r'stroke 0 has coordinates outside 0..255'):
    category_sampling.sample_category(str(tmp_path), 'cat', 1, 1, seed=0)


def test_skip_ratio_and_recognized_filter_go_from_the_command_line_to_the_component():
  from pipeline import pipeline as pipeline_lib  # pylint: disable=g-import-not-at-top
  from pipeline import run as run_lib  # pylint: disable=g-import-not-at-top
  from components.example_gen import executor as example_gen_executor  # pylint: disable=g-import-not-at-top
  args = run_lib.parse_args(['--profile', 'smoke', '--source', '/x', '--max-skip-ratio', '0.2',
                             '--recognized-only'])
  config = run_lib.config_from_args(args)
  assert (config.max_skip_ratio, config.recognized_only) == (0.2, True)
  assert run_lib.config_from_args(run_lib.parse_args(['--source', '/x'])).max_skip_ratio == 0.01
  example_gen = next(c for c in pipeline_lib.create_pipeline(config).components
                     if c.id == 'QuickDrawExampleGen')
  custom_config = example_gen.exec_properties['custom_config']
  if not isinstance(custom_config, str):
    custom_config = example_gen_executor.proto_utils.proto_to_json(custom_config)
  sampling = example_gen_executor.sampling_config({'custom_config': custom_config})
  assert (sampling['max_skip_ratio'], sampling['recognized_only']) == (0.2, True)
  assert set(example_gen.outputs) == {'examples', 'manifest'}


def test_corrupt_gzip_data_fails_like_a_truncated_file(tmp_path):
  path = write_category(str(tmp_path), 'cat', _distinct_drawings(400), gz=True)
  data = bytearray(open(path, 'rb').read())
  data[len(data) // 2:len(data) // 2 + 64] = bytes(64)  # Zeros in the middle of the stream.
  open(path, 'wb').write(bytes(data))
  with pytest.raises(quickdraw_source.QuickDrawDataError,
                     match=r'cat.ndjson.gz:\d+: the file is truncated or not valid gzip'):
    category_sampling.sample_category(str(tmp_path), 'cat', 1, 0, seed=0)
