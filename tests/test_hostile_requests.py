"""The smaller holes of issue 26, through the app: JSON for `//` paths, one version rule for
every route, no confirmation of where the registry is, no object reprs in messages."""
import io
import json
import os
import struct
import zlib

import pytest

from serving import http
from serving import png_decoding
from tests.server_fixtures import FakeSearcher, ndjson
# Fixtures are found by name in the test module.
from tests.server_fixtures import fake_registry, running  # noqa: F401


@pytest.fixture
def client(fake_registry):  # pylint: disable=redefined-outer-name
  return http.create_app(fake_registry, load_searcher=FakeSearcher).test_client()


# waitress reads a path's leading slashes as one; Werkzeug redirected (in HTML) from any other
# doubled slash.
@pytest.mark.parametrize('method, path, status', [
    ('GET', '//models', 200), ('GET', '//health', 200), ('POST', '//search?model=sknet', 200),
    ('GET', '/models//sknet', 404), ('GET', '/models/sknet//', 404), ('POST', '/search//', 404),
    ('GET', '/pad//gallery/sknet/1/0.png', 404), ('GET', '/pad/gallery/sknet//1/0.png', 404),
])
def test_paths_with_double_slashes_get_json_not_redirects(running, method, path, status):
  got, headers, body = running().call(method, path, ndjson(1),
                                      {'Content-Type': 'application/x-ndjson'})
  assert got == status and 'Location' not in headers, (got, headers, body[:200])
  assert headers['Content-Type'] == 'application/json'
  if status == 404:
    assert json.loads(body)['error']['status'] == 404


@pytest.mark.parametrize('version', ['01', '01796622045', '²', '1' * 19, '+1', '0'])
def test_thumbnails_take_versions_by_the_api_rule(client, version):
  api = client.get(f'/models/sknet?version={version}')
  thumbnail = client.get(f'/pad/gallery/sknet/{version}/0.png')
  assert api.status_code == thumbnail.status_code == 400
  assert 'neither "latest" nor a version number' in thumbnail.get_json()['error']['message']


def test_thumbnails_of_latest_are_not_cached_as_immutable(client):
  latest = client.get('/pad/gallery/sknet/latest/0.png')
  numbered = client.get('/pad/gallery/sknet/2/0.png')
  assert latest.status_code == numbered.status_code == 200
  assert latest.data == numbered.data
  assert latest.headers['Cache-Control'] == 'no-cache'
  assert 'immutable' in numbered.headers['Cache-Control']


def _probes(client, value: str):
  """Every place a request can carry a client's string, with `value` in it."""
  ndjson_type = 'application/x-ndjson'
  return [
      client.get(f'/models/{value.lstrip("/")}'),
      client.post('/search', query_string={'model': value}, data=ndjson(1),
                  content_type=ndjson_type),
      client.post('/search', query_string={'model': 'sknet', 'version': value},
                  data=ndjson(1), content_type=ndjson_type),
      client.get('/models/sknet', query_string={'version': value}),
      client.post('/search', query_string={'model': 'sknet', 'k': value}, data=ndjson(1),
                  content_type=ndjson_type),
      client.post('/search?model=sknet', data=ndjson(1), content_type=value),
      client.post('/search?model=sknet', content_type='multipart/form-data',
                  data={'query': (io.BytesIO(b'{"drawing": []}'), value + '/q.ndjson')}),
      client.get(value),
      client.get(f'/pad/gallery/{value.lstrip("/")}/1/0.png'),
  ]


def test_a_right_guess_of_the_registrys_location_reads_like_a_wrong_one(client,
                                                                      fake_registry):
  right = os.path.abspath(fake_registry)
  # A wrong guess of the same shape: same length, same last folder name.
  wrong = os.path.join(os.path.dirname(right).replace('secret-place', 'public-place'),
                       os.path.basename(right))
  assert len(wrong) == len(right) and wrong != right
  for answer, other in zip(_probes(client, right), _probes(client, wrong)):
    assert answer.status_code == other.status_code and answer.status_code >= 400
    assert answer.get_json() == other.get_json(), (answer.get_json(), other.get_json())
    text = answer.get_data(as_text=True)
    assert '<registry>' not in text and 'secret-place' not in text, text


def test_no_object_reprs_reach_clients(client):
  def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
  header = chunk(b'IHDR', struct.pack('>IIBBBBB', 64, 64, 8, 0, 0, 0, 0))
  broken = png_decoding.PNG_MAGIC + header[:-4] + b'\x00' * 4 + chunk(b'IEND', b'')
  response = client.post('/search?model=sknet', data=broken, content_type='image/png')
  assert response.status_code == 400
  message = response.get_json()['error']['message']
  assert message.startswith('request body: not a readable PNG image')
  assert ' at 0x' not in message and 'object' not in message, message
