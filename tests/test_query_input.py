"""Search queries as people send them: canvas PNGs, odd ndjson, and input meant to hurt."""
import codecs
import io
import json
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from components.example_gen import category_sampling
from serving import http
from serving import registry
from serving import search
from tests import registry_fixtures

LINE = {'word': 'box', 'drawing': [[[10, 200, 200, 10, 10], [10, 10, 200, 200, 10]]]}
GOOD = json.dumps(LINE).encode()


def _canvas_png(mode, paper, ink, transparency=None):
  """A 64x64 PNG in `mode` with a filled square of `ink` on `paper`."""
  image = Image.new(mode, (64, 64), paper)
  image.paste(ink, (16, 16, 40, 40))
  buffer = io.BytesIO()
  image.save(buffer, format='PNG', **({} if transparency is None
                                      else {'transparency': transparency}))
  return buffer.getvalue()


def _palette_png(transparent_paper):
  image = Image.new('P', (64, 64), 0)
  image.putpalette([0, 0, 0, 0, 0, 0] + [255, 255, 255] * 254)  # Paper 0 and ink 1: black.
  if not transparent_paper:
    image.putpalette([255, 255, 255, 0, 0, 0] + [255, 255, 255] * 254)
  image.paste(1, (16, 16, 40, 40))
  buffer = io.BytesIO()
  image.save(buffer, format='PNG', **({'transparency': 0} if transparent_paper else {}))
  return buffer.getvalue()


@pytest.mark.parametrize('png', [
    # An HTML canvas export: black strokes on transparent black.
    _canvas_png('RGBA', (0, 0, 0, 0), (0, 0, 0, 255)),
    _canvas_png('LA', (0, 0), (0, 255)),
    _palette_png(transparent_paper=True),
    _canvas_png('L', 7, 0, transparency=7),  # A transparent gray, by a tRNS chunk.
    _canvas_png('RGB', (255, 255, 255), (0, 0, 0)),
    _canvas_png('RGBA', (255, 255, 255, 255), (0, 0, 0, 255)),
    _palette_png(transparent_paper=False),
], ids=['rgba-transparent', 'la-transparent', 'palette-transparent', 'gray-trns-transparent',
        'rgb', 'rgba-opaque', 'palette'])
def test_a_png_in_any_mode_reaches_the_model_as_black_on_white(png):
  [query] = search.queries_from_bytes(png, 'canvas.png')
  # What serving_png does with the bytes: decode to one channel (alpha dropped).
  seen = tf.io.decode_png(query.png, channels=1).numpy()[:, :, 0]
  assert seen.shape == (64, 64)
  assert seen[5, 5] == 255 and seen[60, 30] == 255  # Paper.
  assert seen[20, 20] == 0 and seen[39, 39] == 0  # Ink.
  assert set(np.unique(seen)) == {0, 255}


def test_a_grayscale_png_is_sent_on_unchanged_and_a_blank_transparent_one_is_empty():
  png = _canvas_png('L', 255, 0)
  assert search.queries_from_bytes(png, 'q.png')[0].png == png
  with pytest.raises(search.QueryError, match='blank.png: an empty drawing'):
    search.queries_from_bytes(_canvas_png('RGBA', (0, 0, 0, 0), (0, 0, 0, 0)), 'blank.png')


# Integers too: Python refuses to convert one of over 4,300 digits with a bare ValueError.
@pytest.mark.parametrize('bad', ['NaN', 'Infinity', '-Infinity', '1e999', '-1e999', '9' * 4301,
                                 '-' + '1' * 310])
def test_non_finite_coordinates_are_refused_with_the_line(bad):
  line = f'{{"drawing": [[[10, {bad}, 30], [10, 20, 30]]]}}'.encode()
  with pytest.raises(search.QueryError, match=r'^q:3: .*not a finite number'):
    search.queries_from_bytes(GOOD + b'\n' + GOOD + b'\n' + line + b'\n', 'q')
  # Anywhere in the record, not only in the strokes.
  with pytest.raises(search.QueryError, match=r'^q:1: .*not a finite number'):
    search.queries_from_bytes(json.dumps(dict(LINE, key_id=0)).replace('0}', f'{bad}}}')
                              .encode(), 'q')


def _nested(depth):
  return b'{"drawing": ' + b'[' * depth + b']' * depth + b'}'


def test_deep_nesting_is_refused_before_parsing_with_the_line():
  for depth in (401, 5000, 100_000):
    with pytest.raises(search.QueryError, match=rf'^q:2: the nesting is too deep \({depth + 1} '):
      search.queries_from_bytes(GOOD + b'\n' + _nested(depth), 'q')
  # At the limit the line is parsed and refused for what it holds; brackets in strings and
  # many shallow strokes do not count as depth.
  with pytest.raises(search.QueryError, match=r'^q:1: stroke 0 is not a pair'):
    search.queries_from_bytes(_nested(399), 'q')
  word = '[' * 1000 + '{'
  many = dict(LINE, word=word, drawing=LINE['drawing'] * 200)
  [query] = search.queries_from_bytes(json.dumps(many).encode(), 'q')
  assert query.category == word


def test_too_many_queries_are_refused_before_any_is_parsed(monkeypatch):
  def parse(*args):
    raise AssertionError('a line was parsed before the query count was checked')
  monkeypatch.setattr(search, 'read_drawing', parse)
  budget = search.REQUEST_BUDGET
  body = b'{}\n' * 100_000
  with pytest.raises(search.QueryError, match=rf'^q: 100000 queries; at most {budget.queries}'):
    search.queries_from_bytes(body, 'q')
  with pytest.raises(search.QueryError, match=f'{budget.queries + 1} queries'):
    search.queries_from_bytes((GOOD + b'\n\n') * (budget.queries + 1), 'q')


def test_a_request_over_its_points_is_refused_before_anything_is_drawn(monkeypatch):
  """The budget is in points too: few lines can hold a costly number of them."""
  drawn = []
  monkeypatch.setattr(search.drawing_rendering, 'render_png', lambda *a: drawn.append(a))
  budget = search.REQUEST_BUDGET
  points = budget.points // 2 + 1  # Two such drawings are over the budget, one is not.
  line = json.dumps({'drawing': [[[7] * points, [9] * points]]}).encode()
  with pytest.raises(search.QueryError, match=rf'^q:3: the drawings up to this line hold '
                                              rf'{2 * points} points; at most {budget.points}'):
    search.queries_from_bytes(line + b'\n\n' + line + b'\n', 'q')
  assert drawn == []
  assert len(search.queries_from_bytes(line, 'q')) == 1 and len(drawn) == 1
  # The command line reads the user's own files with a larger budget.
  wide = json.dumps({'drawing': [[[7] * points * 3, [9] * points * 3]]})
  assert len(search.read_queries(wide)) == 1


def test_a_utf8_byte_order_mark_is_read_as_ingestion_reads_it(tmp_path):
  [query] = search.queries_from_bytes(codecs.BOM_UTF8 + GOOD + b'\n', 'q')
  assert query.category == 'box' and query.png == search.queries_from_bytes(GOOD, 'q')[0].png
  path = tmp_path / 'box.ndjson'
  path.write_bytes(codecs.BOM_UTF8 + GOOD + b'\n')
  assert search.read_queries(str(path))[0].category == 'box'
  sample = category_sampling.sample_category(str(tmp_path), 'box', 1, 0, seed=0)
  assert sample.read == 1 and sample.skipped == {}


@pytest.mark.parametrize('data, message', [
    (GOOD + b'\n' + GOOD.replace(b'box', b'bo\xe9te'), r'^q:2: not UTF-8 text \(byte 0xe9'),
    (GOOD.decode().encode('utf-16-le'), r'^q:1: not UTF-8 text \(it has NUL bytes'),
    (GOOD.decode().encode('utf-16'), r'^q: UTF-16 text'),
])
def test_text_in_another_encoding_is_refused_naming_the_line(data, message):
  with pytest.raises(search.QueryError, match=message):
    search.queries_from_bytes(data, 'q')


def test_a_literal_query_that_is_not_utf8_is_refused_not_a_traceback():
  # How Python hands over a command-line argument that is not UTF-8 (surrogate escapes).
  literal = os.fsdecode(GOOD.replace(b'box', b'bo\xe9te'))
  with pytest.raises(search.QueryError, match=r'^<ndjson line>:1: not UTF-8 text'):
    search.read_queries(literal)


# The HTTP endpoint: each query is refused with 400 before a model is loaded.

@pytest.fixture
def client(monkeypatch, tmp_path):
  toy = registry.ModelVersion('toy', 1, str(tmp_path), {'data': {'render_size': 64}})
  monkeypatch.setattr(registry, 'resolve', lambda *args, **kwargs: toy)
  return http.create_app(str(tmp_path)).test_client()


@pytest.mark.parametrize('body, message', [
    (GOOD + b'\n' + _nested(100_000), 'request body:2: the nesting is too deep'),
    (GOOD + b'\n' + GOOD.replace(b'10,', b'NaN,', 1), 'request body:2: NaN is not a finite'),
    (GOOD.replace(b'box', b'bo\xe9te'), 'request body:1: not UTF-8 text'),
    (b'{}\n' * 100_000, 'request body: 100000 queries; at most 64'),
    (GOOD + b'\n' + GOOD.replace(b'10,', b'1' * 4301 + b',', 1),
     'request body:2: an integer of 4301 digits is not a finite number'),
    (GOOD.replace(b'"box"', b'["box"]'), 'request body:1: "word" must be a string'),
    (GOOD.replace(b'"box"', b'7'), 'request body:1: "word" must be a string'),
])
def test_http_answers_400_naming_the_line(client, body, message):
  response = client.post('/search?model=toy', data=body, content_type='application/x-ndjson')
  assert response.status_code == 400, response.get_json()
  assert message in response.get_json()['error']['message']


def test_the_command_line_refuses_a_huge_integer_as_the_bad_line(tmp_path, capsys):
  from pipeline import cli  # pylint: disable=g-import-not-at-top
  folder = tmp_path / 'toy' / '1'
  folder.mkdir(parents=True)
  registry_fixtures.write_model_files(str(folder))
  registry_fixtures.write_gallery(str(folder), [b'png'], ['box'])
  (folder / registry.MODEL_CARD_FILE).write_text(json.dumps({'model_name': 'toy'}))
  query = GOOD.replace(b'10,', b'1' * 5000 + b',', 1).decode()
  assert cli.main(['search', '--model', 'toy', '--query', query,
                   '--registry', str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert '<ndjson line>:1: an integer of 5000 digits is not a finite number' in err
  assert 'Traceback' not in err


def test_word_must_be_a_string_and_is_echoed_only_as_one():
  [query] = search.queries_from_bytes(GOOD, 'q')
  assert query.category == 'box'
  for word, kind in (('["box"]', 'a list'), ('{"a": 1}', 'an object'), ('null', 'null')):
    with pytest.raises(search.QueryError, match=f'^q:1: "word" must be a string .*not {kind}'):
      search.queries_from_bytes(GOOD.replace(b'"box"', word.encode()), 'q')
