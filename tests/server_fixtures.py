"""The search server's test doubles: a fake searcher, a registry of fake versions it serves,
and waitress running the app in a thread (tests/test_http_server.py, tests/test_slow_clients.py,
tests/test_hostile_requests.py)."""
import http.client as http_client
import json
import os
import threading

import pytest
from waitress import wasyncore

from serving import http
from serving import registry
from serving import search
from serving import server as server_lib
from tests import registry_fixtures

LINE = {'word': 'box', 'drawing': [[[10, 200, 200, 10, 10], [10, 10, 200, 200, 10]]]}


def ndjson(lines: int, pad: int = 0) -> bytes:
  """`lines` query lines, each padded with a `key` of `pad` characters."""
  record = dict(LINE, key='x' * pad)
  return b''.join(json.dumps(record).encode() + b'\n' for _ in range(lines))


class FakeSearcher:
  """Answers every query with no neighbours; counts loads and closes."""
  loads = []

  def __init__(self, model_version, fail=None):
    self.model_version = model_version
    self.gallery = [0, 1, 2]
    self.closed = False
    self.fail = fail
    FakeSearcher.loads.append((model_version.model, model_version.version))

  def search(self, queries, k):
    if self.fail:
      raise self.fail
    return [search.Result(query=q, predicted='box', probability=1.0, neighbours=[])
            for q in queries]

  def close(self):
    self.closed = True


def push(root, model, version):
  folder = os.path.join(root, model, str(version))
  os.makedirs(folder)
  registry_fixtures.write_model_files(folder)
  registry_fixtures.write_gallery(folder, [b'png'] * 3, ['box'] * 3)
  card = {'model_name': model, 'version': version, 'metrics': {'map': 0.5},
          'categories': ['box'], 'data': {'render_size': 256, 'stroke_width': 3},
          'gallery': {'file': registry.GALLERY_FILE, 'size': 3},
          'data_manifest': {'source': os.path.join(root, 'source')},
          'lineage': {'model_artifact': {'id': 7, 'uri': os.path.join(root, 'pipeline', 'Model')}}}
  with open(os.path.join(folder, registry.MODEL_CARD_FILE), 'w') as f:
    json.dump(card, f)


@pytest.fixture
def fake_registry(tmp_path):
  root = str(tmp_path / 'secret-place' / 'registry')
  push(root, 'sknet', 1)
  push(root, 'sknet', 2)
  return root


class Running:
  """A waitress server on a free port, in a thread: `make_server(app, **options)`, or a
  `server` built already (on port 0)."""

  def __init__(self, app=None, server=None, **options):
    self.server = server or server_lib.make_server(app, '127.0.0.1', 0, **options)
    self.port = self.server.effective_port
    self.stopped = threading.Event()
    self.thread = threading.Thread(target=self._run, daemon=True)
    self.thread.start()

  def _run(self):
    # server.run() loops until the process ends; this loop stops when asked, then closes the
    # server in its own thread (closing it from another breaks the loop's select()).
    while not self.stopped.is_set():  # poll() as the server's own loop: no select() limit.
      wasyncore.loop(timeout=0.1, map=self.server._map,  # pylint: disable=protected-access
                     use_poll=self.server.adj.asyncore_use_poll, count=1)
    self.server.close()
    self.server.task_dispatcher.shutdown()

  def call(self, method, path, body=None, headers=None, timeout=30):
    connection = http_client.HTTPConnection('127.0.0.1', self.port, timeout=timeout)
    try:
      connection.request(method, path, body=body, headers=headers or {},
                         encode_chunked=not isinstance(body, (bytes, type(None))))
      response = connection.getresponse()
      return response.status, dict(response.getheaders()), response.read()
    finally:
      connection.close()

  def close(self):
    self.stopped.set()
    self.thread.join(10)


@pytest.fixture
def running(fake_registry):
  started = []

  def start(limit=64 * 1024, searcher=FakeSearcher, **options):
    app = http.create_app(fake_registry, max_upload_bytes=limit, load_searcher=searcher)
    started.append(Running(app, max_upload_bytes=limit, **options))
    return started[-1]

  yield start
  for server in started:
    server.close()


def chunks(data: bytes, size: int = 8192):
  return iter([data[i:i + size] for i in range(0, len(data), size)])
