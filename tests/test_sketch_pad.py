"""The sketch pad (serving/pad.py): its routes, and the page itself in headless Chromium,
drawn on with mouse, pen and touch input (tests/headless_chromium.py).
"""
import contextlib
import io
import json
import math
import os
import threading

import numpy as np
from PIL import Image
import pytest
from werkzeug import serving as werkzeug_serving

from domain import drawing_rendering
from serving import http
from serving import pad
from serving import registry
from serving import search
from tests import headless_chromium
from tests import registry_fixtures

needs_chromium = headless_chromium.needs_chromium

# A fake registry: model cards and galleries, empty SavedModels (the page and thumbnails need
# none), and a damaged version 3 of toy (no SavedModel) that the pickers list as unusable.
FAKE_MODELS = {'toy': [1, 2], 'other': [5]}
GALLERY_DRAWINGS = [[([10, 200], [10, 200])], [([10, 200, 200], [100, 100, 10])],
                    [([128], [128])]]


def _fake_registry(root) -> str:
  for model, versions in FAKE_MODELS.items():
    for version in versions:
      folder = root / model / str(version)
      folder.mkdir(parents=True)
      registry_fixtures.write_model_files(str(folder))
      (folder / registry.MODEL_CARD_FILE).write_text(json.dumps(
          {'pushed_at': f'2026-01-0{version}T00:00:00+00:00', 'metrics': {'map': 0.5},
           'categories': ['line', 'corner'], 'gallery': {'size': 3}}))
      registry.write_gallery(str(folder / registry.GALLERY_FILE), registry.Gallery(
          embedding=np.zeros((3, 4), np.float32), category=np.array(['line', 'corner', 'dot']),
          id=np.array(['line/1', 'corner/2', 'dot/3']), split=np.array(['test'] * 3),
          png=[drawing_rendering.render_png(d, 64 * version, 3) for d in GALLERY_DRAWINGS]))
  damaged = root / 'toy' / '3'
  damaged.mkdir()
  (damaged / registry.MODEL_CARD_FILE).write_text('{}')
  return str(root)


def _app(registry_root: str):
  return http.create_app(registry_root)  # The sketch pad is part of every search server.


class _Recorder:
  """WSGI middleware that keeps the body of every POST /search (what the page sent)."""

  def __init__(self, app):
    self.app = app
    self.bodies = []

  def __call__(self, environ, start_response):
    if environ.get('PATH_INFO') == '/search':
      body = environ['wsgi.input'].read(int(environ.get('CONTENT_LENGTH') or 0))
      self.bodies.append(body)
      environ['wsgi.input'] = io.BytesIO(body)
    return self.app(environ, start_response)


@contextlib.contextmanager
def _served(app):
  httpd = werkzeug_serving.make_server('127.0.0.1', 0, app, threaded=True)
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  try:
    yield f'http://127.0.0.1:{httpd.server_port}'
  finally:
    httpd.shutdown()
    thread.join()


# The routes, without a browser.

def test_page_static_files_and_thumbnails_are_served(tmp_path):
  client = _app(_fake_registry(tmp_path)).test_client()
  for path in ('/', '/pad'):
    page = client.get(path)
    assert page.status_code == 200 and page.mimetype == 'text/html'
    html = page.get_data(as_text=True)
    assert '<canvas id="canvas"' in html
    assert 'src="/pad/static/pad.js"' in html and 'href="/pad/static/pad.css"' in html
  script = client.get('/pad/static/pad.js')
  assert script.status_code == 200 and 'javascript' in script.mimetype
  assert 'pointerdown' in script.get_data(as_text=True)
  assert client.get('/pad/static/pad.css').mimetype == 'text/css'
  for index, drawing in enumerate(GALLERY_DRAWINGS):
    thumbnail = client.get(f'/pad/gallery/toy/2/{index}.png')
    assert thumbnail.status_code == 200 and thumbnail.mimetype == 'image/png'
    assert thumbnail.data == drawing_rendering.render_png(drawing, 128, 3)
    assert 'immutable' in thumbnail.headers['Cache-Control']
  # Each version serves its own gallery.
  assert client.get('/pad/gallery/toy/1/0.png').data == drawing_rendering.render_png(
      GALLERY_DRAWINGS[0], 64, 3)


def test_thumbnails_of_a_loaded_version_come_from_its_searcher_not_a_second_copy(
    tmp_path, monkeypatch):
  loads = []
  load_gallery = registry.load_gallery

  def counted(model_version):
    loads.append((model_version.model, model_version.version))
    return load_gallery(model_version)

  monkeypatch.setattr(registry, 'load_gallery', counted)

  class GallerySearcher:  # Holds its gallery as the real Searcher does; finds nothing.
    def __init__(self, model_version):
      self.model_version = model_version
      self.gallery = registry.load_gallery(model_version)

    def search(self, queries, k):
      return [search.Result(query=q, predicted='line', probability=1.0, neighbours=[])
              for q in queries]

  client = http.create_app(_fake_registry(tmp_path), load_searcher=GallerySearcher).test_client()
  drawing = json.dumps({'drawing': GALLERY_DRAWINGS[0]}).encode()
  assert client.post('/search?model=toy&version=2', data=drawing,
                     content_type='application/x-ndjson').status_code == 200
  assert loads == [('toy', 2)]
  for index, drawing in enumerate(GALLERY_DRAWINGS):
    thumbnail = client.get(f'/pad/gallery/toy/2/{index}.png')
    assert thumbnail.data == drawing_rendering.render_png(drawing, 128, 3)
  assert loads == [('toy', 2)]  # The loaded searcher's gallery, not a copy of its own.
  assert client.get('/pad/gallery/toy/1/0.png').status_code == 200
  assert loads == [('toy', 2), ('toy', 1)]  # A version not loaded is read for the pad.


@pytest.mark.parametrize('path, message', [
    ('/pad/gallery/toy/2/3.png', 'no gallery drawing 3; the gallery has 3 (0 to 2)'),
    ('/pad/gallery/toy/4/0.png', "no version '4'"),
    ('/pad/gallery/toy/3/0.png', 'no saved_model.pb'),
    ('/pad/gallery/vgg/1/0.png', "no model 'vgg'"),
    ('/pad/static/missing.js', 'not found'),
])
def test_unknown_thumbnails_get_json_errors(tmp_path, path, message):
  response = _app(_fake_registry(tmp_path)).test_client().get(path)
  assert response.status_code == 404
  assert message.lower() in response.get_json()['error']['message'].lower()


def test_a_version_pushed_without_a_gallery_is_a_404_that_says_so(tmp_path):
  root = _fake_registry(tmp_path)
  os.remove(os.path.join(root, 'other', '5', registry.GALLERY_FILE))
  response = _app(root).test_client().get('/pad/gallery/other/5/0.png')
  assert response.status_code == 404
  assert 'no gallery.npz' in response.get_json()['error']['message']


# What the page shows, read from its DOM and canvas.
STATE_JS = """(() => {
  const $ = (id) => document.getElementById(id);
  if (!$('canvas')) return null;
  const canvas = $('canvas');
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let ink = 0;
  for (let i = 3; i < pixels.length; i += 4) ink += pixels[i] > 0;
  const rect = canvas.getBoundingClientRect();
  return {
    models: [...$('model').options].map((o) => o.value),
    versions: [...$('version').options].map((o) => o.value),
    unusable: [...$('version').options].filter((o) => o.disabled).map((o) => o.textContent),
    latest: $('version').options.length ? $('version').options[0].textContent : null,
    categories: [...document.querySelectorAll('#categories li')].map(
        (li) => [li.dataset.category, Number(li.dataset.probability), li.textContent]),
    neighbours: [...document.querySelectorAll('#neighbours li')].map((li) => {
      const image = li.querySelector('img');
      return {id: li.dataset.id, category: li.dataset.category,
              distance: Number(li.dataset.distance), text: li.textContent, alt: image.alt,
              width: image.complete ? image.naturalWidth : 0};
    }),
    busy: $('results').getAttribute('aria-busy') === 'true',
    error: $('error').hidden ? null : $('error').textContent,
    status: $('status').textContent, summary: $('summary').textContent,
    undo: !$('undo').disabled, clear: !$('clear').disabled, ink,
    box: {left: rect.left + canvas.clientLeft, top: rect.top + canvas.clientTop,
          width: canvas.clientWidth, height: canvas.clientHeight},
    page: {scroll: document.documentElement.scrollWidth, inner: window.innerWidth},
  };
})()"""


@pytest.fixture
def browser(tmp_path):
  chromium = headless_chromium.Browser(str(tmp_path / 'chromium'))
  yield chromium
  chromium.close()


def _wait(browser, condition, what: str, timeout: float = 30) -> dict:
  """The page's state (STATE_JS) once `condition(state)` holds."""
  return browser.wait_for(STATE_JS, condition, what, timeout)


def _query_line(strokes, box) -> bytes:
  """The ndjson line pad.js must send for strokes drawn at these page coordinates: the same
  arithmetic in the same order, so the numbers agree to the bit (Math.round is floor(v + .5))."""
  normalized = []
  for stroke in strokes:
    points = []
    for x, y in stroke:
      point = ((x - box['left']) / box['width'], (y - box['top']) / box['width'])
      if not points or points[-1] != point:
        points.append(point)
    normalized.append(points)
  xs = [x for points in normalized for x, _ in points]
  ys = [y for points in normalized for _, y in points]
  left, top = min(xs), min(ys)
  extent = max(max(xs) - left, max(ys) - top)
  scale = 255 / extent if extent > 0 else 0
  drawing = []
  for points in normalized:
    out_x, out_y = [], []
    for x, y in points:
      px = min(255, math.floor((x - left) * scale + 0.5))
      py = min(255, math.floor((y - top) * scale + 0.5))
      if not (out_x and out_x[-1] == px and out_y[-1] == py):
        out_x.append(px)
        out_y.append(py)
    drawing.append([out_x, out_y])
  return (json.dumps({'drawing': drawing}, separators=(',', ':')) + '\n').encode()


def _shape(box, points):
  """Points given in a 0..1 square mapped onto the canvas (whole page pixels)."""
  return [(round(box['left'] + 10 + x * (box['width'] - 20)),
           round(box['top'] + 10 + y * (box['height'] - 20))) for x, y in points]


CIRCLE = [(0.5 + 0.4 * math.cos(a / 12 * math.pi), 0.5 + 0.4 * math.sin(a / 12 * math.pi))
          for a in range(25)]
LINE = [(0.1 + i * 0.08, 0.8 - i * 0.06) for i in range(11)]
ZIGZAG = [(0.2 + i * 0.1, 0.3 + (i % 2) * 0.3) for i in range(7)]


@needs_chromium
def test_the_page_lists_models_shows_api_errors_and_fits_a_phone(tmp_path, browser):
  root = _fake_registry(tmp_path / 'registry')
  with _served(_app(root)) as url:
    browser.open(url + '/pad', width=375, height=800, mobile=True)
    state = _wait(browser, lambda s: s['models'], 'the model picker')
    assert state['models'] == ['other', 'toy']
    assert state['versions'] == ['latest', '5']
    browser.choose('#model', 'toy')
    state = _wait(browser, lambda s: s['versions'] != ['latest', '5'], 'the versions of toy')
    assert state['versions'] == ['latest', '3', '2', '1']  # Newest first.
    # The damaged version is listed with the registry's reason, and cannot be chosen.
    assert state['latest'] == 'latest (2)'
    assert len(state['unusable']) == 1 and 'no saved_model.pb' in state['unusable'][0]
    assert not state['undo'] and not state['clear'] and state['ink'] == 0
    # A phone's width: nothing wider than the screen, the canvas square and most of it.
    assert state['page']['scroll'] <= state['page']['inner'] == 375
    assert state['box']['width'] == state['box']['height'] >= 300
    # A finger on the canvas draws: the browser neither scrolls nor zooms.
    assert browser.evaluate('getComputedStyle(document.getElementById("canvas")).touchAction') \
        == 'none'

    # A version that went away after the page listed it: the API's 404 message is shown.
    browser.evaluate('(() => { const o = document.createElement("option"); o.value = "9"; '
                     'document.getElementById("version").append(o); })()')
    browser.choose('#version', '9')
    browser.stroke(_shape(state['box'], CIRCLE), pointer='touch')
    state = _wait(browser, lambda s: s['error'], 'an error message')
    assert "no version '9'" in state['error']
    assert state['undo'] and state['clear'] and state['ink'] > 0
    assert state['categories'] == [] and state['neighbours'] == []

    browser.stroke(_shape(state['box'], LINE), pointer='pen')
    two = _wait(browser, lambda s: s['ink'] > state['ink'], 'a second stroke')
    browser.click('#undo')
    one = _wait(browser, lambda s: s['ink'] < two['ink'], 'undo to remove the stroke')
    assert one['ink'] == state['ink'] and one['undo']
    browser.click('#clear')
    empty = _wait(browser, lambda s: not s['clear'] and s['ink'] == 0,
                  'clear to empty the canvas')
    assert empty['ink'] == 0 and not empty['undo'] and empty['error'] is None
    assert browser.exceptions() == []


def _api(client, model: str, k: int, line: bytes) -> dict:
  """The API's answer to a drawing (through a test client: not recorded as the page's)."""
  response = client.post(f'/search?model={model}&k={k}', data=line,
                         content_type='application/x-ndjson')
  assert response.status_code == 200, response.get_json()
  return response.get_json()['queries'][0]


def _shows(state, expected: dict) -> bool:
  """Whether the page shows the API's answer: its categories and its neighbours, in order."""
  return (not state['busy'] and state['error'] is None
          and [c[0] for c in state['categories']] == [
              c['category'] for c in expected['top_categories']]
          and [n['id'] for n in state['neighbours']] == [n['id'] for n in expected['results']])


@pytest.mark.e2e
@needs_chromium
def test_drawing_shows_categories_and_neighbours_that_undo_and_clear_change(
    smoke_registry, tmp_path, browser):
  config, _ = smoke_registry
  root = config.registry_dir
  card = registry.resolve(root, 'sknet').card
  app = _app(root)
  client = app.test_client()
  recorder = _Recorder(app)
  with _served(recorder) as url:
    browser.open(url + '/', width=1100, height=1000)
    state = _wait(browser, lambda s: s['models'], 'the model picker')
    assert state['models'] == registry.list_models(root)
    box = state['box']
    strokes = [_shape(box, CIRCLE), _shape(box, LINE), _shape(box, ZIGZAG)]
    for stroke, pointer in zip(strokes, ('mouse', 'pen', 'touch')):
      browser.stroke(stroke, pointer)
    # The page sends the drawing scaled as the dataset's are, and shows the API's answer.
    line = _query_line(strokes, box)
    expected = _api(client, 'sknet', 10, line)
    # The first search loads the model.
    drawn = _wait(browser, lambda s: _shows(s, expected), 'the results of three strokes',
                  timeout=180)
    assert recorder.bodies[-1] == line
    top = min(5, len(card['categories']))
    assert len(drawn['categories']) == top
    probabilities = [p for _, p, _ in drawn['categories']]
    assert all(0 <= p <= 1 for p in probabilities) and sum(probabilities) <= 1 + 1e-6
    assert probabilities == sorted(probabilities, reverse=True)
    # float32 results vary a little with how requests were batched together.
    assert probabilities == pytest.approx(
        [c['probability'] for c in expected['top_categories']], rel=1e-4, abs=1e-6)
    assert {c for c, _, _ in drawn['categories']} <= set(card['categories'])
    assert f'{100 * probabilities[0]:.1f}%' in drawn['categories'][0][2]
    # k thumbnails that loaded, captioned with category and distance.
    drawn = _wait(browser, lambda s: all(n['width'] for n in s['neighbours']),
                  'the thumbnails to load')
    assert len(drawn['neighbours']) == 10
    gallery = registry.load_gallery(registry.resolve(root, 'sknet'))
    for shown, result in zip(drawn['neighbours'], expected['results']):
      with Image.open(io.BytesIO(gallery.png[result['index']])) as image:
        assert shown['width'] == image.width  # The thumbnail is the gallery's own PNG.
      assert shown['category'] == result['category']
      assert result['category'] in shown['text']
      assert f'distance {shown["distance"]:.2f}' in shown['text']
      assert shown['distance'] == pytest.approx(result['distance'], rel=1e-4)
    assert 'sknet version' in drawn['summary']
    browser.screenshot(str(tmp_path / 'pad.png'))

    # Undo removes the last stroke: less ink, and the results of the first two strokes.
    browser.click('#undo')
    line = _query_line(strokes[:2], box)
    expected = _api(client, 'sknet', 10, line)
    undone = _wait(browser, lambda s: s['ink'] < drawn['ink'] and _shows(s, expected),
                   'the results after undo')
    assert recorder.bodies[-1] == line
    assert undone['undo'] and undone['clear']

    # Another model and k: searched again at once.
    browser.choose('#model', 'skresnet')
    browser.choose('#k', '5')
    expected = _api(client, 'skresnet', 5, line)
    switched = _wait(browser, lambda s: _shows(s, expected), 'the results of skresnet',
                     timeout=180)
    assert len(switched['neighbours']) == 5 and 'skresnet version' in switched['summary']

    # Clear empties the canvas and the results.
    browser.click('#clear')
    cleared = _wait(browser, lambda s: not s['categories'] and s['ink'] == 0,
                    'clear to empty the canvas and the results')
    assert cleared['neighbours'] == [] and cleared['ink'] == 0
    assert not cleared['undo'] and not cleared['clear'] and cleared['error'] is None
    assert browser.exceptions() == []
