"""Sources behind an HTTP(S) prefix, served from this machine's loopback in the test."""
import functools
import gzip
import http.server
import os
import threading

import pytest

from components.example_gen import category_sampling
from domain import quickdraw_source
from domain import url_cache
from tests.conftest import make_synthetic_source


@pytest.fixture(scope='module')
def server(tmp_path_factory):
  """A loopback HTTP server over a synthetic source folder; yields (base URL, folder, log)."""
  folder = make_synthetic_source(str(tmp_path_factory.mktemp('served')),
                                 categories=('line', 'The Eiffel Tower'), per_category=20,
                                 duplicates=0)
  # The official bucket serves plain .ndjson: decompress the gzipped synthetic file.
  gz = os.path.join(folder, 'The Eiffel Tower.ndjson.gz')
  with gzip.open(gz) as f, open(gz[:-3], 'wb') as out:
    out.write(f.read())
  os.remove(gz)
  requests = []

  class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
      requests.append(self.path)

  httpd = http.server.ThreadingHTTPServer(
      ('127.0.0.1', 0), functools.partial(Handler, directory=folder))
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield f'http://127.0.0.1:{httpd.server_address[1]}', folder, requests
  httpd.shutdown()


def test_category_files_are_downloaded_once_and_cached(server, tmp_path, monkeypatch):
  base, folder, requests = server
  monkeypatch.setattr(url_cache, 'CACHE_DIR', str(tmp_path))
  first = category_sampling.sample_category(base, 'The Eiffel Tower', 10, 5, seed=1)
  count = len(requests)
  second = category_sampling.sample_category(base, 'The Eiffel Tower', 10, 5, seed=1)
  assert len(requests) == count  # Served from the cache the second time.
  assert first.train == second.train and first.read == 20
  local = category_sampling.sample_category(folder, 'The Eiffel Tower', 10, 5, seed=1)
  assert local.train == first.train  # Same drawings as reading the folder itself.
  assert any('The%20Eiffel%20Tower.ndjson' in r for r in requests)


def test_partial_download_is_completed_even_when_the_server_ignores_range(server, tmp_path):
  base, folder, _ = server
  url = base + '/line.ndjson'
  content = open(os.path.join(folder, 'line.ndjson'), 'rb').read()
  cached = url_cache.fetch(url, cache_dir=str(tmp_path))
  os.remove(cached)
  with open(cached + '.part', 'wb') as f:
    f.write(content[:100])
  again = url_cache.fetch(url, cache_dir=str(tmp_path))
  assert open(again, 'rb').read() == content
  assert not os.path.exists(again + '.part')


def test_unreachable_url_names_the_address(tmp_path):
  with pytest.raises(OSError, match=r'http://127.0.0.1:9/x.ndjson: cannot download'):
    url_cache.fetch('http://127.0.0.1:9/x.ndjson', cache_dir=str(tmp_path), timeout=5)


def test_url_sources_list_the_official_categories():
  names = quickdraw_source.list_categories('https://example.invalid/full/simplified/')
  assert len(names) == 345 and 'The Eiffel Tower' in names and 'cat' in names


def test_other_suffixes_are_tried_and_a_missing_category_is_named(server, tmp_path,
                                                                  monkeypatch):
  base, folder, _ = server
  monkeypatch.setattr(url_cache, 'CACHE_DIR', str(tmp_path))
  with open(os.path.join(folder, 'line.ndjson'), 'rb') as f, \
      gzip.open(os.path.join(folder, 'gz only.ndjson.gz'), 'wb') as out:
    out.write(f.read().replace(b'"line"', b'"gz only"'))
  path = quickdraw_source.category_path(base, 'gz only')
  assert path.endswith('gz%20only.ndjson.gz')  # .ndjson was a 404: the next suffix served.
  assert category_sampling.sample_category(base, 'gz only', 10, 5, seed=0).read == 20
  with pytest.raises(quickdraw_source.QuickDrawDataError,
                     match=r"category 'the eiffel tower' has no file.*'The Eiffel Tower'"):
    quickdraw_source.category_path(base, 'the eiffel tower')


def test_a_finished_download_is_logged_with_its_size(server, tmp_path, caplog):
  base, _, _ = server
  caplog.set_level('INFO')
  path = url_cache.fetch(base + '/line.ndjson', cache_dir=str(tmp_path))
  size = os.path.getsize(path)
  assert f'Downloaded line.ndjson: {size} of {size} bytes' in caplog.messages


def test_a_download_shorter_than_announced_is_kept_partial_and_resumed(tmp_path):
  """A server that announces more bytes than it sends the first time, then serves the rest."""
  content = b'{"word": "cat", "drawing": [[[1, 2], [3, 4]]]}\n' * 50
  calls = []

  class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
      pass

    def do_GET(self):  # pylint: disable=invalid-name
      calls.append(self.headers.get('Range'))
      start = int(self.headers['Range'][6:-1]) if self.headers.get('Range') else 0
      if start:
        self.send_response(206)
        self.send_header('Content-Range', f'bytes {start}-{len(content) - 1}/{len(content)}')
      else:
        self.send_response(200)
      self.send_header('Content-Length', str(len(content) - start))
      self.end_headers()
      self.wfile.write(content[start:] if start else content[:1000])  # First time: cut short.

  httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
  threading.Thread(target=httpd.serve_forever, daemon=True).start()
  url = f'http://127.0.0.1:{httpd.server_address[1]}/cat.ndjson'
  try:
    with pytest.raises(OSError, match=rf'downloaded 1000 of {len(content)} bytes .*resume'):
      url_cache.fetch(url, cache_dir=str(tmp_path), timeout=5)
    path = url_cache.fetch(url, cache_dir=str(tmp_path), timeout=5)
  finally:
    httpd.shutdown()
  assert open(path, 'rb').read() == content and calls == [None, 'bytes=1000-']
