"""Versions that pass every check on their files and still fail to load (issue 26): "latest"
falls back to the newest version that loads, the failure is remembered with its reason and
listed, never retried on each request; the command line says so without a traceback."""
import io
import json
import os

import pytest

from pipeline import cli
from serving import http
from serving import registry
from serving import search
from tests import registry_fixtures

PNGS = [registry_fixtures.png((8, 8, 40, 40)), registry_fixtures.png((30, 2, 34, 60))]


def _version(root, version, loadable):
  """A tiny real model; unless `loadable`, its variables' index is overwritten, which the
  readers' checks on the files cannot see."""
  folder = os.path.join(root, 'toy', str(version))
  os.makedirs(folder)
  registry_fixtures.write_tiny_model(folder)
  if not loadable:
    with open(os.path.join(folder, registry.VARIABLES_INDEX), 'r+b') as f:
      f.write(b'\x00damaged' * 4)
  registry_fixtures.write_gallery(folder, PNGS, ['box', 'line'])
  card = {'model_name': 'toy', 'version': str(version), 'metrics': {'map': 0.5},
          'data': {'render_size': 64, 'stroke_width': 2},
          'gallery': {'file': registry.GALLERY_FILE, 'size': 2}}
  with open(os.path.join(folder, registry.MODEL_CARD_FILE), 'w') as f:
    json.dump(card, f)


@pytest.fixture(scope='module')
def registry_root(tmp_path_factory):
  """Version 1 loads; version 2, the newest, does not."""
  root = str(tmp_path_factory.mktemp('loading') / 'registry')
  _version(root, 1, loadable=True)
  _version(root, 2, loadable=False)
  return root


@pytest.fixture
def loads(monkeypatch):
  """Every SavedModel load attempted, by version."""
  attempts = []
  load_model = registry.load_model

  def counted(model_version):
    attempts.append(model_version.version)
    return load_model(model_version)

  monkeypatch.setattr(registry, 'load_model', counted)
  monkeypatch.setattr(registry, '_verdicts', {})  # Each test starts with nothing remembered.
  return attempts


def test_a_version_that_fails_to_load_is_remembered_and_latest_falls_back(registry_root, loads):
  assert registry.resolve(registry_root, 'toy').version == 2  # Its files pass every check.
  searcher = search.Searcher.from_registry(registry_root, 'toy')
  assert searcher.model_version.version == 1 and loads == [2, 1]
  assert registry.resolve(registry_root, 'toy').version == 1
  with pytest.raises(registry.DamagedVersionError,
                     match=r"'toy' version 2 cannot be used: the SavedModel cannot be loaded"):
    registry.resolve(registry_root, 'toy', 2)
  [row] = [r for r in registry.summary_rows(registry_root) if r['version'] == 2]
  assert row['skipped'].startswith('the SavedModel cannot be loaded (')
  assert search.Searcher.from_registry(registry_root, 'toy').model_version.version == 1
  assert loads == [2, 1, 1]  # Version 2 was not tried again.
  [result] = searcher.search([search.Query('q', PNGS[0])], k=2)
  assert [n.category for n in result.neighbours] == ['box', 'line']


def test_the_server_searches_the_newest_version_that_loads_and_lists_the_other(registry_root,
                                                                               loads):
  client = http.create_app(registry_root).test_client()
  for _ in range(3):
    response = client.post('/search?model=toy&k=1', data=PNGS[1], content_type='image/png')
    assert response.status_code == 200, response.get_json()
    assert response.get_json()['version'] == 1
  assert loads == [2, 1]  # One failed load, remembered; no retry on each request.
  response = client.post('/search?model=toy&version=2', data=PNGS[1], content_type='image/png')
  assert response.status_code == 404
  assert 'the SavedModel cannot be loaded' in response.get_json()['error']['message']
  rows = {row['version']: row for row in client.get('/models').get_json()['models']}
  assert 'skipped' not in rows[1]
  assert rows[2]['skipped'].startswith('the SavedModel cannot be loaded')
  assert loads == [2, 1]


def test_an_uploaded_file_is_searched_on_the_version_latest_falls_back_to(registry_root, loads):
  """The query is read with the first version tried; the fallback searches the same upload."""
  client = http.create_app(registry_root).test_client()
  response = client.post('/search?model=toy&k=1', content_type='multipart/form-data',
                         data={'query': (io.BytesIO(PNGS[1]), 'line.png')})
  assert response.status_code == 200, response.get_json()
  assert response.get_json()['version'] == 1 and loads == [2, 1]
  [answer] = response.get_json()['queries']
  assert answer['query'] == 'line.png' and len(answer['results']) == 1


def test_the_command_line_falls_back_with_a_message_not_a_traceback(registry_root, loads,
                                                                    capsys, tmp_path):
  query = tmp_path / 'q.png'
  query.write_bytes(PNGS[0])
  assert cli.main(['search', '--model', 'toy', '--query', str(query), '--k', '1', '--json',
                   '--registry', registry_root]) == 0
  captured = capsys.readouterr()
  assert 'Traceback' not in captured.err
  assert "'toy' version 2: the SavedModel cannot be loaded" in captured.err
  assert json.loads(captured.out)[0]['results'][0]['category'] == 'box'
  assert cli.main(['search', '--model', 'toy', '--query', str(query), '--version', '2',
                   '--registry', registry_root]) == 2
  captured = capsys.readouterr()
  assert 'Traceback' not in captured.err and 'cannot be used' in captured.err
