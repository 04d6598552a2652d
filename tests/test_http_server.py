"""The search server as deployed: waitress (serving/server.py), upload limits, timeouts, the
model cache, micro-batching and JSON errors. Light tests use a fake searcher on a registry of
model cards; the last ones load the smoke run's model."""
import http.client as http_client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent import futures

import numpy as np
import pytest
from werkzeug import serving as werkzeug_serving

from serving import batching
from serving import errors
from serving import http
from serving import registry
from serving import search
from tests import server_fixtures
# Fixtures are found by name in the test module.
from tests.server_fixtures import FakeSearcher, Running, fake_registry, running  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_push, _ndjson, _chunks = server_fixtures.push, server_fixtures.ndjson, server_fixtures.chunks


# Upload limits hold for chunked bodies too; timeouts; bounded threads.

@pytest.mark.parametrize('chunked', [False, True], ids=['content-length', 'chunked'])
def test_an_upload_over_the_limit_is_413_json_never_cut(running, chunked):
  server = running(limit=64 * 1024)
  small, large = _ndjson(20, pad=2000), _ndjson(60, pad=2000)  # ~40 KB and ~120 KB.
  assert len(small) < 64 * 1024 < len(large)
  headers = {'Content-Type': 'application/x-ndjson'}
  status, _, body = server.call('POST', '/search?model=sknet',
                                _chunks(small) if chunked else small, headers)
  assert status == 200 and len(json.loads(body)['queries']) == 20
  status, got_headers, body = server.call('POST', '/search?model=sknet',
                                          _chunks(large) if chunked else large, headers)
  assert status == 413, body
  assert got_headers['Content-Type'] == 'application/json'
  assert json.loads(body)['error'] == {'status': 413,
                                       'message': 'the upload is over the limit of 65536 bytes'}
  # Far over the limit: still a 413, not a connection reset.
  status, _, body = server.call('POST', '/search?model=sknet',
                                _chunks(large * 40) if chunked else large * 40, headers)
  assert status == 413 and json.loads(body)['error']['status'] == 413


def test_the_default_limit_refuses_600_chunked_queries(running):
  """The user's case: 600 ndjson queries (over 4 MiB) sent chunked were cut to 512 results."""
  server = running(limit=errors.MAX_UPLOAD_BYTES)
  data = _ndjson(600, pad=7100)
  assert len(data) > errors.MAX_UPLOAD_BYTES
  status, _, body = server.call('POST', '/search?model=sknet', _chunks(data, 65536),
                                {'Content-Type': 'application/x-ndjson'})
  assert status == 413, body[:200]


def test_the_app_refuses_a_chunked_body_over_the_limit_on_any_wsgi_server(fake_registry):
  """Under Werkzeug's server (or any that sets wsgi.input_terminated) too: 413, not a cut."""
  app = http.create_app(fake_registry, max_upload_bytes=64 * 1024, load_searcher=FakeSearcher)
  httpd = werkzeug_serving.make_server('127.0.0.1', 0, app, threaded=True)
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  try:
    for lines, status in ((20, 200), (60, 413)):
      connection = http_client.HTTPConnection('127.0.0.1', httpd.server_port, timeout=30)
      connection.request('POST', '/search?model=sknet', body=_chunks(_ndjson(lines, pad=2000)),
                         headers={'Content-Type': 'application/x-ndjson'}, encode_chunked=True)
      response = connection.getresponse()
      body = json.loads(response.read())
      assert response.status == status, body
      if status == 200:
        assert len(body['queries']) == lines
    connection.close()
  finally:
    httpd.shutdown()
    thread.join()


def _stall(port, declared=10_000):
  """A client that sends headers and part of a body, then nothing."""
  client = socket.create_connection(('127.0.0.1', port), timeout=20)
  client.sendall(b'POST /search?model=sknet HTTP/1.1\r\nHost: x\r\n'
                 b'Content-Type: application/x-ndjson\r\n'
                 + f'Content-Length: {declared}\r\n\r\n'.encode() + b'{"drawing": [[[1')
  return client


def _closed_by_server(client) -> bool:
  try:
    return client.recv(1024) == b''
  except ConnectionResetError:
    return True


def _still_open(client) -> bool:
  """True when the server has neither closed the connection nor sent anything on it yet."""
  client.setblocking(False)
  try:
    client.recv(1024)
    return False
  except BlockingIOError:
    return True
  except ConnectionResetError:
    return False
  finally:
    client.settimeout(20)


def test_stalled_uploads_hold_no_worker_and_are_disconnected_after_the_timeout(running):
  server = running(threads=2, timeout=5.0)
  stalled = [_stall(server.port) for _ in range(6)]  # More than the worker threads.
  time.sleep(0.3)
  status, _, body = server.call('POST', '/search?model=sknet', _ndjson(1),
                                {'Content-Type': 'application/x-ndjson'}, timeout=30)
  assert status == 200 and json.loads(body)['queries']
  # Served while every stalled upload still held its connection, not after their timeout.
  assert all(_still_open(client) for client in stalled)
  assert all(_closed_by_server(client) for client in stalled)
  for client in stalled:
    client.close()


def test_malformed_requests_get_json_errors_from_the_server(running):
  server = running()
  client = socket.create_connection(('127.0.0.1', server.port), timeout=10)
  client.sendall(b'POST /search?model=sknet HTTP/1.1\r\nHost: x\r\n'
                 b'Transfer-Encoding: chunked\r\n\r\nnot-hex\r\nxx\r\n0\r\n\r\n')
  response = http_client.HTTPResponse(client)
  response.begin()
  assert response.status == 400
  assert json.loads(response.read())['error']['status'] == 400
  client.close()


def test_serve_runs_waitress_with_its_options(fake_registry):
  """`quickdraw-tfx serve` starts the production server (not Flask's development one)."""
  process = subprocess.Popen(
      [sys.executable, '-m', 'pipeline.cli', 'serve', '--registry', fake_registry, '--port', '0',
       '--threads', '2', '--timeout', '5', '--max-models', '2', '--max-upload-bytes', '1000'],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    line = process.stdout.readline()
    assert 'search endpoint on http://127.0.0.1:' in line, process.stderr.read()
    port = int(line.split('http://127.0.0.1:')[1].split('/')[0])
    connection = http_client.HTTPConnection('127.0.0.1', port, timeout=30)
    connection.request('GET', '/models')
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader('Server') == 'quickdraw-tfx'
    assert [row['version'] for row in json.loads(response.read())['models']] == [1, 2]
    connection.request('POST', '/search?model=sknet', body=b'x' * 2000,
                       headers={'Content-Type': 'image/png'})
    assert connection.getresponse().status == 413
  finally:
    process.terminate()
    assert process.wait(30) == 0


@pytest.mark.parametrize('option, message', [
    ('--threads=0', '--threads 0: must be at least 1'),
    ('--max-models=0', '--max-models 0: must be at least 1'),
    ('--timeout=0', '--timeout must be above 0'),
])
def test_serve_refuses_bad_options(fake_registry, capsys, option, message):
  from pipeline import cli  # pylint: disable=g-import-not-at-top
  assert cli.main(['serve', '--registry', fake_registry, option]) == 2
  assert message in capsys.readouterr().err


# A bounded cache of loaded versions.

def test_the_server_loads_each_pushed_version_into_a_bounded_cache(tmp_path):
  root = str(tmp_path / 'registry')
  FakeSearcher.loads = []
  app = http.create_app(root, max_models=2, load_searcher=FakeSearcher)
  client = app.test_client()
  searchers = app.extensions['searchers']
  for version in range(1, 6):  # Five pushes, each searched a few times.
    _push(root, 'sknet', version)
    for _ in range(3):
      response = client.post('/search?model=sknet', data=_ndjson(1),
                             content_type='application/x-ndjson')
      assert response.status_code == 200 and response.json['version'] == version
  assert FakeSearcher.loads == [('sknet', v) for v in range(1, 6)]
  assert searchers.keys() == [('sknet', 4), ('sknet', 5)]
  assert client.get('/health').json['loaded'] == [{'model': 'sknet', 'version': 4},
                                                  {'model': 'sknet', 'version': 5}]
  response = client.post('/search?model=sknet&version=1', data=_ndjson(1),
                         content_type='application/x-ndjson')
  assert response.status_code == 200 and FakeSearcher.loads[-1] == ('sknet', 1)


def test_health_reports_how_each_loaded_version_batches(tmp_path):
  """Requests, model calls and inputs per call: whether batches form under load."""
  root = str(tmp_path / 'registry')
  _push(root, 'sknet', 1)

  class Batched(FakeSearcher):
    def __init__(self, model_version):
      super().__init__(model_version)
      self.batcher = batching.MicroBatcher(lambda inputs: {'row': inputs}, max_wait=0.05)

    def search(self, queries, k):
      self.batcher(queries)
      return super().search(queries, k)

  client = http.create_app(root, load_searcher=Batched).test_client()
  for count in (1, 3):
    response = client.post('/search?model=sknet', data=_ndjson(count),
                           content_type='application/x-ndjson')
    assert response.status_code == 200
  [loaded] = client.get('/health').json['loaded']
  assert loaded['batching'] == {'requests': 2, 'calls': 2, 'batch_sizes': {'1': 1, '3': 1}}


# No server paths; every failure is JSON.

def test_responses_never_reveal_server_paths(fake_registry):
  client = http.create_app(fake_registry, load_searcher=FakeSearcher).test_client()
  responses = [client.get('/models'), client.get('/models/sknet'),
               client.get('/models/sknet?version=9'), client.get('/models/vgg'),
               client.post('/search?model=vgg', data=_ndjson(1),
                           content_type='application/x-ndjson'),
               client.post('/search?model=sknet&version=7', data=_ndjson(1),
                           content_type='application/x-ndjson')]
  assert [r.status_code for r in responses] == [200, 200, 404, 404, 404, 404]
  for response in responses:
    text = response.get_data(as_text=True)
    assert 'secret-place' not in text and os.sep + 'tmp' not in text, text
  assert 'registry' not in responses[0].json
  assert responses[1].json['lineage']['model_artifact'] == {'id': 7}


def test_every_failure_is_answered_as_json(fake_registry):
  class Broken(FakeSearcher):
    def __init__(self, model_version):
      super().__init__(model_version, fail=RuntimeError(f'{fake_registry}/x: boom'))

  client = http.create_app(fake_registry, load_searcher=Broken).test_client()
  cases = [
      (client.get('/nowhere'), 404, 'not found'),
      (client.get('/search?model=sknet'), 405, 'use POST'),
      (client.delete('/models'), 405, 'use GET'),
      (client.post('/search?model=sknet&version=v1', data=_ndjson(1),
                   content_type='application/x-ndjson'), 400, 'neither "latest"'),
      (client.post('/search?model=sknet', data=_ndjson(1),
                   content_type='application/x-ndjson'), 500, 'the server failed: RuntimeError'),
  ]
  for response, status, message in cases:
    assert response.status_code == status and response.is_json, response.data
    assert response.json['error']['status'] == status
    assert message in response.json['error']['message']
    assert 'Traceback' not in response.get_data(as_text=True)
  assert 'POST' in cases[1][0].headers['Allow']
  assert 'boom' not in cases[-1][0].get_data(as_text=True)


# With the smoke run's model.

# Unit roundoff of each compute precision the Trainer may choose.
_ROUNDING = {'float32': 2.0 ** -24, 'mixed_bfloat16': 2.0 ** -8, 'mixed_float16': 2.0 ** -11}


@pytest.fixture(scope='module')
def pushed_registry(smoke_registry):
  config, _ = smoke_registry
  return config.registry_dir


@pytest.mark.e2e
def test_concurrent_searches_share_model_calls_and_match_one_at_a_time(pushed_registry):
  version = registry.resolve(pushed_registry, 'sknet', need_gallery=True)
  alone = search.Searcher(version)
  gallery = alone.gallery
  picks = list(range(0, min(len(gallery), 24)))
  expected = [alone.search([search.Query(f'q{i}', gallery.png[i])], k=5)[0] for i in picks]

  made = []

  def load(model_version):
    made.append(http.BatchedSearcher(model_version, max_batch=64, max_wait=0.02))
    return made[-1]

  server = Running(http.create_app(pushed_registry, load_searcher=load), threads=len(picks))
  try:
    server.call('POST', '/search?model=sknet&k=5', gallery.png[0], {'Content-Type': 'image/png'})
    calls_before = made[0].batcher.calls
    with futures.ThreadPoolExecutor(len(picks)) as pool:
      answers = list(pool.map(lambda i: server.call('POST', '/search?model=sknet&k=5',
                                                    gallery.png[i],
                                                    {'Content-Type': 'image/png'}), picks))
  finally:
    server.close()
  assert len(made) == 1
  calls = made[0].batcher.calls - calls_before
  assert calls < len(picks), calls
  # A model that computes in 16 bits gives a drawing a slightly different embedding in a batch
  # of another size (oneDNN picks kernels by shape): distances agree to that precision's
  # rounding, relative to the largest distance.
  rounding = _ROUNDING[version.card['training_run']['precision']]
  for (status, _, body), want in zip(answers, expected):
    assert status == 200
    [got] = json.loads(body)['queries']
    assert got['results'][0]['id'] == want.neighbours[0].id
    wanted = [n.distance for n in want.neighbours]
    np.testing.assert_allclose([n['distance'] for n in got['results']], wanted,
                               rtol=1e-4, atol=max(1e-2, rounding * max(wanted)))
    assert got['predicted_category'] == want.predicted
