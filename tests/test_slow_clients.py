"""Slow and trickling clients against the server as the README deploys it (`quickdraw-tfx
serve` with its defaults, serving/server.py), and the upload limit as clients count it (issue
26)."""
import json
import os
import select
import socket
import threading
import time

import pytest

from pipeline import cli
from serving import registry
from serving import server as server_lib
from tests import registry_fixtures
from tests.server_fixtures import Running, chunks, ndjson
# Fixtures are found by name in the test module.
from tests.server_fixtures import fake_registry, running  # noqa: F401

TRICKLERS = 600
NDJSON = {'Content-Type': 'application/x-ndjson'}
_REQUEST = (b'POST /search?model=sknet HTTP/1.1\r\nHost: x\r\nContent-Type: '
            b'application/x-ndjson\r\nContent-Length: 100000\r\n\r\n' + b' ' * 100_000)


def _open(port):
  client = socket.create_connection(('127.0.0.1', port), timeout=10)
  client.setblocking(False)
  return client


def _closed(client) -> bool:
  try:
    return client.recv(1024) == b''
  except BlockingIOError:
    return False
  except ConnectionResetError:
    return True


@pytest.fixture
def deployed(tmp_path):
  """`quickdraw-tfx serve --registry R --port 0` as the command builds it (every other option
  its default), on a registry holding a tiny real model."""
  root = str(tmp_path / 'registry')
  folder = os.path.join(root, 'sknet', '1')
  os.makedirs(folder)
  registry_fixtures.write_tiny_model(folder)
  registry_fixtures.write_gallery(folder, [registry_fixtures.png((8, 8, 40, 40))], ['box'])
  with open(os.path.join(folder, registry.MODEL_CARD_FILE), 'w') as f:
    json.dump({'model_name': 'sknet', 'version': '1',
               'data': {'render_size': 64, 'stroke_width': 2},
               'gallery': {'file': registry.GALLERY_FILE, 'size': 1}}, f)
  args = cli.build_parser().parse_args(['serve', '--registry', root, '--port', '0'])
  running_server = Running(server=server_lib.deployed_server(args, root))
  yield running_server
  running_server.close()


def test_the_deployment_answers_a_search_while_600_connections_trickle_bytes(deployed):
  """Each trickler sends a byte a second, which restarts any idle timer; the search must not
  wait for them to go."""
  if server_lib.fit_open_files(2 * TRICKLERS + 100) < 2 * TRICKLERS + 100:
    pytest.skip('the system allows too few open files for both ends of 600 connections')
  status, _, body = deployed.call('POST', '/search?model=sknet', ndjson(1), NDJSON, timeout=120)
  assert status == 200, body  # The model is loaded before the tricklers come.
  clients = [_open(deployed.port) for _ in range(TRICKLERS)]
  stop = threading.Event()

  def trickle():
    sent = 0
    while not stop.is_set():
      for client in clients:
        client.send(_REQUEST[sent:sent + 1])
      sent += 1
      stop.wait(1.0)

  thread = threading.Thread(target=trickle, daemon=True)
  thread.start()
  try:
    time.sleep(2.5)  # Every trickler has sent a few bytes of its headers.
    # Before, past waitress's connection limit (500), this waited for the tricklers to go.
    status, _, body = deployed.call('POST', '/search?model=sknet', ndjson(1), NDJSON,
                                    timeout=40)
    assert status == 200, body
    assert json.loads(body)['queries'][0]['query_category'] == 'box'
    # The server holds every trickler's connection open (waitress's map: them, the search's
    # connection until it closes, and the listener).
    assert len(deployed.server._map) >= TRICKLERS + 1  # pylint: disable=protected-access
    assert not any(_closed(client) for client in clients)
  finally:
    stop.set()
    thread.join()
    for client in clients:
      client.close()


def test_a_request_that_trickles_in_is_closed_at_its_request_timeout(running):
  """Ten bytes a second keep the connection from ever being idle for `timeout`; the request
  timeout closes it all the same."""
  server = running(timeout=30.0, request_timeout=1.0)
  client = _open(server.port)
  started, closed_after = time.monotonic(), None
  try:
    for byte in range(len(_REQUEST)):
      if time.monotonic() - started > 25.0:  # Well before the idle timeout could act.
        break
      try:
        if _closed(client):
          raise ConnectionResetError
        client.send(_REQUEST[byte:byte + 1])
      except (BrokenPipeError, ConnectionResetError):
        closed_after = time.monotonic() - started
        break
      select.select([client], [], [], 0.1)
  finally:
    client.close()
  assert closed_after is not None and closed_after >= 1.0, closed_after
  # A request that arrives in time is served as before.
  status, _, _ = server.call('POST', '/search?model=sknet', ndjson(1), NDJSON)
  assert status == 200


def _exactly(size: int) -> bytes:
  """ndjson queries padded with blank lines to exactly `size` bytes."""
  body = ndjson(20, pad=1000)
  return body + b'\n' * (size - len(body))


@pytest.mark.parametrize('chunk', [None, 16], ids=['content-length', 'chunked-16-bytes'])
def test_the_upload_limit_counts_the_body_only_and_includes_the_limit(running, chunk):
  limit = 64 * 1024
  server = running(limit=limit)
  for size, expected in ((limit, 200), (limit + 1, 413)):
    body = _exactly(size)
    status, _, answer = server.call('POST', '/search?model=sknet',
                                    body if chunk is None else chunks(body, chunk), NDJSON)
    assert status == expected, (size, answer[:200])
  # The case: a body of 0.8 times the limit in 1-byte chunks (5 bytes of framing
  # each) is under the limit.
  status, _, answer = server.call('POST', '/search?model=sknet',
                                  chunks(_exactly(int(limit * 0.8)), 1), NDJSON)
  assert status == 200, answer[:200]
