"""Similarity search on pushed models: queries, exact L2 search, the CLI and the HTTP endpoint."""
import gzip
import io
import json
import os
import threading
import urllib.error
import urllib.request

import numpy as np
from PIL import Image
import pytest
from werkzeug import serving as werkzeug_serving

from components.evaluator import outputs as evaluation_outputs
from domain import drawing_rendering
from domain import quickdraw_source
from domain import retrieval
from pipeline import cli
from pipeline import results
from serving import ann
from serving import http
from serving import png_decoding
from serving import search

LINE = {'word': 'box', 'drawing': [[[10, 200, 200, 10, 10], [10, 10, 200, 200, 10]]]}


def _png(size=(64, 64), ink=True, image_format='PNG'):
  image = Image.new('L', size, color=255)
  if ink:
    image.paste(0, (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
  buffer = io.BytesIO()
  image.save(buffer, format=image_format)
  return buffer.getvalue()


# Queries, without a model.

def test_png_and_ndjson_queries_are_read_and_rendered_like_training_data(tmp_path):
  png = _png()
  assert search.queries_from_bytes(png, 'q.png') == [search.Query('q.png', png)]
  path = tmp_path / 'two.ndjson'
  second = dict(LINE, word='zig zag')
  path.write_text(json.dumps(LINE) + '\n\n' + json.dumps(second) + '\n')
  queries = search.read_queries(str(path), render_size=128, stroke_width=2)
  assert [q.name for q in queries] == [f'{path}:1', f'{path}:3']
  assert [q.category for q in queries] == ['box', 'zig zag']
  strokes = [(xs, ys) for xs, ys in LINE['drawing']]
  assert queries[0].png == drawing_rendering.render_png(strokes, 128, 2)
  literal = search.read_queries(json.dumps({'drawing': LINE['drawing']}))
  assert literal[0].png == drawing_rendering.render_png(strokes, 256, 3)
  assert literal[0].category is None


@pytest.mark.parametrize('data, message', [
    (b'hello, world', 'neither a PNG image nor Quick, Draw! ndjson'),
    (b'', 'empty'),
    (search.PNG_MAGIC + b'not really', 'not a readable PNG'),
    (_png(ink=False), 'empty drawing'),
    (_png(size=(8, 8)), 'each side must be 16 to 4096'),
    (_png(size=(5000, 20)), 'each side must be 16 to 4096'),
    (b'{"drawing": []}', 'q:1: "drawing" is empty'),
    (b'{"drawing": [[[1, 2], [3]]]}', 'q:1: stroke 0 is not a pair'),
    (json.dumps(LINE).encode() + b'\n{"drawing": [[[1, 2], [3, 4]]', 'q:2: not a JSON object'),
])
def test_bad_queries_get_errors_that_name_them(data, message):
  with pytest.raises(search.QueryError, match=message.replace('(', r'\(')):
    search.queries_from_bytes(data, 'q')


def test_too_large_png_and_missing_file_are_refused(monkeypatch, tmp_path):
  monkeypatch.setattr(png_decoding, 'MAX_PNG_BYTES', 100)
  with pytest.raises(search.QueryError, match='the limit is 100'):
    search.queries_from_bytes(_png(), 'big.png')
  with pytest.raises(search.QueryError, match='no such file'):
    search.read_queries(str(tmp_path / 'missing.png'))


def test_nearest_matches_a_brute_force_ranking():
  rng = np.random.default_rng(0)
  gallery, queries = rng.normal(size=(50, 8)), rng.normal(size=(3, 8))
  indices, distances = retrieval.nearest(queries, gallery, k=5)
  for q in range(3):
    brute = np.sqrt(((gallery - queries[q]) ** 2).sum(axis=1))
    np.testing.assert_array_equal(indices[q], np.argsort(brute)[:5])
    np.testing.assert_allclose(distances[q], np.sort(brute)[:5])
  assert retrieval.nearest(queries, gallery[:2], k=5)[0].shape == (3, 2)


def test_hnsw_index_agrees_with_exact_search_on_clustered_vectors():
  rng = np.random.default_rng(1)
  centers = rng.normal(size=(20, 64))
  gallery = np.maximum(centers[rng.integers(20, size=2000)] + rng.normal(size=(2000, 64)), 0)
  queries = gallery[::100] + 0.01  # Near-copies of gallery rows: each must find its row first.
  exact, exact_distances = retrieval.nearest(queries, gallery, k=10)
  approximate, distances = ann.HnswIndex(gallery).search(queries, k=10)
  np.testing.assert_array_equal(approximate[:, 0], np.arange(0, 2000, 100))
  recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approximate, exact)])
  assert recall >= 0.9
  # Where both found the same row, they report the same L2 distance (not squared).
  same = approximate == exact
  np.testing.assert_allclose(distances[same], exact_distances[same], rtol=1e-4)
  assert ann.HnswIndex(gallery[:3]).search(queries, k=10)[0].shape == (20, 3)


# Search on a model pushed by a real smoke run.

@pytest.fixture(scope='module')
def pushed(smoke_registry):
  config, run_id = smoke_registry
  nodes = results.node_runs(results.open_store(config.metadata_path), config.pipeline_name,
                            run_id)
  searcher = search.Searcher.from_registry(config.registry_dir, 'sknet')
  return config, nodes, searcher


def _source_line(source, drawing_id):
  """The ndjson line a drawing came from (ids are <category>/<line number>)."""
  category, number = drawing_id.rsplit('/', 1)
  path = quickdraw_source.category_path(source, category)
  with open(path, 'rb') as raw:
    lines = (gzip.open(raw) if path.endswith('.gz') else raw).read().splitlines()
  return lines[int(number) - 1]


@pytest.mark.e2e
def test_a_gallery_drawing_finds_itself_first(pushed):
  config, nodes, searcher = pushed
  gallery = searcher.gallery
  picks = [0, len(gallery) // 2, len(gallery) - 1]
  found = searcher.search([search.Query(f'gallery[{i}]', gallery.png[i]) for i in picks], k=5)
  uri = nodes['EmbeddingEvaluator.sknet'].outputs['embeddings'][0].uri
  with open(os.path.join(uri, evaluation_outputs.EMBEDDINGS_FILE), 'rb') as f:
    predicted = dict(zip(*(lambda d: (d['id'], d['predicted']))(np.load(f))))
  for i, result in zip(picks, found):
    assert result.neighbours[0].index == i
    assert result.neighbours[0].id == gallery.id[i]
    assert result.neighbours[0].distance < 1e-2
    assert [n.rank for n in result.neighbours] == [1, 2, 3, 4, 5]
    assert all(a.distance <= b.distance for a, b in zip(result.neighbours, result.neighbours[1:]))
    # serving_png on the PNG predicts what the Evaluator's embed signature did on the example.
    assert result.predicted == predicted[gallery.id[i]]
  # The same drawing as an ndjson line from the source: rendered as in training, found first.
  drawing_id = str(gallery.id[1])
  line = _source_line(config.source, drawing_id)
  query = search.queries_from_bytes(line, 'line',
                                    *search.render_settings(searcher.model_version.card))
  assert query[0].png == gallery.png[1]
  assert searcher.search(query, k=1)[0].neighbours[0].id == drawing_id
  # The approximate index finds the same drawings on this small gallery.
  hnsw = search.Searcher(searcher.model_version, index='hnsw')
  assert [r.neighbours[0].index for r in hnsw.search(
      [search.Query('q', gallery.png[i]) for i in picks], k=5)] == picks


@pytest.mark.e2e
def test_the_search_tools_default_registry_is_where_the_default_run_pushes(monkeypatch):
  """serving/ does not import the pipeline's configuration; the two must still agree."""
  from pipeline import config as config_lib  # pylint: disable=g-import-not-at-top
  from serving import cli as serving_cli  # pylint: disable=g-import-not-at-top
  monkeypatch.delenv('QUICKDRAW_REGISTRY', raising=False)
  assert serving_cli.default_registry() == config_lib.PROFILES['default'].registry_dir
  monkeypatch.setenv('QUICKDRAW_REGISTRY', '/elsewhere')
  assert serving_cli.default_registry() == '/elsewhere'


def test_cli_lists_models_and_shows_a_card(pushed, capsys):
  config, _, searcher = pushed
  version = searcher.model_version
  assert cli.main(['models', '--registry', config.registry_dir]) == 0
  out = capsys.readouterr().out
  assert f'sknet      {version.version}' in out
  assert f'map {version.card["metrics"]["map"]:.4f}' in out
  assert cli.main(['models', 'sknet', '--registry', config.registry_dir, '--json']) == 0
  assert json.loads(capsys.readouterr().out) == version.card
  assert cli.main(['models', 'sknet', '--version', str(version.version),
                   '--registry', config.registry_dir]) == 0
  assert f'# skNet version {version.version}' in capsys.readouterr().out


@pytest.mark.e2e
def test_cli_search_prints_results_and_writes_a_grid(pushed, tmp_path, capsys):
  config, _, searcher = pushed
  gallery = searcher.gallery
  query = tmp_path / 'query.png'
  query.write_bytes(gallery.png[3])
  grid = tmp_path / 'out' / 'grid.png'
  assert cli.main(['search', '--model', 'sknet', '--query', str(query), '--k', '4',
                   '--registry', config.registry_dir, '--out', str(grid)]) == 0
  out = capsys.readouterr().out
  assert f'{query}: predicted ' in out
  first = out.split('rank')[1].splitlines()[1].split()
  assert first[0] == '1' and float(first[1]) < 1e-2 and first[-1] == gallery.id[3]
  with Image.open(grid) as image:
    assert image.size == (5 * 128, 128 + 14)
  assert cli.main(['search', '--model', 'sknet', '--query', json.dumps(LINE), '--k', '3',
                   '--registry', config.registry_dir, '--json']) == 0
  [result] = json.loads(capsys.readouterr().out)
  assert result['query_category'] == 'box' and len(result['results']) == 3
  assert result['predicted_category'] in searcher.model_version.card['categories']


@pytest.mark.e2e
@pytest.mark.parametrize('query, args, code, message', [
    ('text', [], 2, 'neither a PNG image nor Quick, Draw! ndjson'),
    ('empty', [], 2, '"drawing" is empty'),
    ('small', [], 2, 'is 8x8 pixels'),
    ('missing', [], 2, 'no such file'),
    ('png', ['--model', 'resnet50'], 2, "no model 'resnet50'"),
    ('png', ['--version', '12'], 2, "no version '12'"),
    ('png', ['--k', '0'], 2, '--k 0: choose 1 to 100'),
])
def test_cli_search_refuses_bad_input_with_a_message(pushed, tmp_path, capsys, query, args,
                                                     code, message):
  config, _, _ = pushed
  files = {'text': b'just text', 'empty': b'{"drawing": []}\n', 'small': _png(size=(8, 8)),
           'png': _png()}
  path = tmp_path / f'{query}.bin'
  if query in files:
    path.write_bytes(files[query])
  options = {'--model': 'sknet', '--query': str(path), '--registry': config.registry_dir}
  options.update(zip(args[::2], args[1::2]))
  assert cli.main(['search'] + [item for pair in options.items() for item in pair]) == code
  err = capsys.readouterr().err
  assert message in err and 'Traceback' not in err


def test_cli_models_on_an_empty_registry_fails_with_a_hint(tmp_path, capsys):
  assert cli.main(['models', '--registry', str(tmp_path)]) == 1
  assert 'no pushed models (run the pipeline first' in capsys.readouterr().err


# The HTTP endpoint, served for real on the loopback interface.

@pytest.fixture(scope='module')
def server(pushed):
  config, _, _ = pushed
  app = http.create_app(config.registry_dir, max_upload_bytes=64 * 1024)
  httpd = werkzeug_serving.make_server('127.0.0.1', 0, app, threaded=True)
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield f'http://127.0.0.1:{httpd.server_port}'
  httpd.shutdown()
  thread.join()


def _call(url, data=None, content_type=None):
  request = urllib.request.Request(url, data=data, method='POST' if data is not None else 'GET')
  if content_type:
    request.add_header('Content-Type', content_type)
  try:
    with urllib.request.urlopen(request, timeout=120) as response:
      return response.status, json.loads(response.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def _multipart(field, filename, data):
  boundary = 'qdtfxboundary'
  body = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
          f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n').encode()
  return body + data + f'\r\n--{boundary}--\r\n'.encode(), \
      f'multipart/form-data; boundary={boundary}'


@pytest.mark.e2e
def test_http_search_finds_a_gallery_drawing_first(pushed, server):
  _, _, searcher = pushed
  gallery = searcher.gallery
  status, body = _call(f'{server}/search?model=sknet&k=3', gallery.png[5], 'image/png')
  assert status == 200, body
  assert body['model'] == 'sknet' and body['version'] == searcher.model_version.version
  [result] = body['queries']
  assert result['results'][0]['id'] == gallery.id[5] and len(result['results']) == 3
  status, body = _call(f'{server}/search?model=sknet&k=2',
                       *_multipart('query', 'q.png', gallery.png[6]))
  assert status == 200 and body['queries'][0]['results'][0]['id'] == gallery.id[6]
  two = (json.dumps(LINE) + '\n' + json.dumps(LINE) + '\n').encode()
  status, body = _call(f'{server}/search?model=sknet', two, 'application/x-ndjson')
  assert status == 200 and [q['query'] for q in body['queries']] == [
      'request body:1', 'request body:2']
  status, body = _call(f'{server}/models')
  assert status == 200 and body['models'][0]['version'] == searcher.model_version.version
  status, body = _call(f'{server}/models/sknet')
  card = http.public_card(searcher.model_version.card)  # Without server paths.
  assert status == 200 and body == json.loads(json.dumps(card))


@pytest.mark.e2e
@pytest.mark.parametrize('path, data, content_type, status, message', [
    ('/search?model=sknet', b'not an image', 'image/png', 400, 'neither a PNG image'),
    ('/search?model=sknet', b'{"drawing": []}', 'application/x-ndjson', 400,
     '"drawing" is empty'),
    ('/search?model=sknet', _png(size=(8, 8)), 'image/png', 400, 'is 8x8 pixels'),
    ('/search?model=sknet', _png(ink=False), 'image/png', 400, 'empty drawing'),
    ('/search?model=sknet', b'\x89PNG' + b'0' * 70000, 'image/png', 413,
     'over the limit of 65536 bytes'),
    ('/search?model=sknet', _png(), 'image/jpeg', 415, "Content-Type 'image/jpeg'"),
    ('/search?model=sknet', _multipart('file', 'q.png', _png()), None, 400,
     'no file field "query"'),
    ('/search', _png(), 'image/png', 400, '"model" parameter is required'),
    ('/search?model=sknet&k=ten', _png(), 'image/png', 400, "k='ten' is not a whole number"),
    ('/search?model=sknet&k=101', _png(), 'image/png', 400, 'k=101: choose 1 to 100'),
    ('/search?model=vgg', _png(), 'image/png', 404, "no model 'vgg'"),
    ('/search?model=sknet&version=3', _png(), 'image/png', 404, "no version '3'"),
    ('/nowhere', _png(), 'image/png', 404, 'not found'),
])
def test_http_refuses_bad_requests_with_json_errors(server, path, data, content_type, status,
                                                    message):
  if isinstance(data, tuple):
    data, content_type = data
  got, body = _call(server + path, data, content_type)
  assert got == status, body
  assert body['error']['status'] == status
  assert message.lower() in body['error']['message'].lower()
