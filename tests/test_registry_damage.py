"""The registry's readers on damaged or odd registries: bad version names, broken model cards,
missing files; the command line on them (no traceback); no server paths in what clients see."""
import io
import json
import logging
import os
import shutil

from PIL import Image
import numpy as np
import pytest

from pipeline import cli
from serving import registry
from serving import search
from tests import registry_fixtures

CARD = registry.MODEL_CARD_FILE


def _version(root, version, card=None, model='toy', saved_model=True, gallery=False,
             damage=None):
  """A version folder as the readers see it; `card` is a dict, or raw text written as is;
  `damage(folder)` then breaks it."""
  folder = os.path.join(str(root), model, str(version))
  os.makedirs(folder, exist_ok=True)
  if saved_model:
    registry_fixtures.write_model_files(folder)
  if gallery:
    registry.write_gallery(os.path.join(folder, registry.GALLERY_FILE), registry.Gallery(
        embedding=np.zeros((2, 3), np.float32), category=np.array(['box', 'line']),
        id=np.array(['box/1', 'line/1']), split=np.array(['test', 'test']),
        png=[_png(), _png()]))
  if card is None:
    card = {'model_name': model, 'version': str(version), 'pushed_at': '2026-01-01T00:00:00',
            'metrics': {'map': 0.5, 'test_accuracy': 0.75},
            'gallery': {'file': registry.GALLERY_FILE if gallery else None,
                        'size': 2 if gallery else 0}}
  with open(os.path.join(folder, CARD), 'w', encoding='utf-8', errors='surrogateescape') as f:
    f.write(card if isinstance(card, str) else json.dumps(card))
  if damage:
    damage(folder)
  return folder


def _overwrite(name, data=b'\x00garbage' * 20, at=40):
  """Damage: `data` written over a file from byte `at`, as a failing disk or copy leaves it."""
  def damage(folder):
    with open(os.path.join(folder, name), 'r+b') as f:
      f.seek(at)
      f.write(data)
  return damage


def _png():
  image = Image.new('L', (32, 32), color=255)
  image.paste(0, (8, 8, 16, 16))
  buffer = io.BytesIO()
  image.save(buffer, format='PNG')
  return buffer.getvalue()


# Version names.

@pytest.mark.parametrize('version', ['²', '٣', '5' * 5000, '007', '0', '+7', ' 7', '7\n', '-1',
                                     '1' * 19, '', 'newest', 0, -3, 10**18, True, 1.5, None])
def test_a_version_that_is_not_a_canonical_number_is_a_bad_version(tmp_path, version):
  _version(tmp_path, 7)
  with pytest.raises(registry.BadVersionError) as raised:
    registry.resolve(str(tmp_path), 'toy', version)
  assert 'version' in str(raised.value) and len(str(raised.value)) < 200
  assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize('version', ['7', 7, '1' * 18])
def test_canonical_numbers_are_versions(tmp_path, version):
  _version(tmp_path, version)
  assert registry.resolve(str(tmp_path), 'toy', version).version == int(version)


def test_folders_with_non_canonical_names_are_ignored(tmp_path):
  _version(tmp_path, 5)
  for name in ('007', '²', '0', '1' * 19, '12a'):
    _version(tmp_path, name)
  assert registry.version_numbers(str(tmp_path / 'toy')) == [5]
  assert [v.version for v in registry.list_versions(str(tmp_path), 'toy')] == [5]
  assert registry.resolve(str(tmp_path), 'toy').version == 5
  assert [row['version'] for row in registry.summary_rows(str(tmp_path))] == [5]


# Damaged versions.

DAMAGE = {
    'truncated card': (dict(card='{"model_name": "toy", "metr'), 'not valid JSON (line 1'),
    'card is a list': (dict(card='[1, 2]'), 'not a JSON object'),
    'card is a string': (dict(card='"toy"'), 'not a JSON object'),
    'card not UTF-8': (dict(card='{"a": "\udcff"}'), 'not readable JSON'),
    'card nested too deep': (dict(card='[' * 100000), 'not readable JSON'),
    'empty card': (dict(card=''), 'not valid JSON'),
    'no SavedModel': (dict(saved_model=False), f'no {registry.SAVED_MODEL_FILE}'),
    'gallery named, missing': (
        dict(card={'gallery': {'file': registry.GALLERY_FILE, 'size': 9}}),
        f'no {registry.GALLERY_FILE}'),
    # Present but not loadable (issue 26): readers checked that files exist, not that they load.
    'gallery corrupt': (dict(gallery=True, damage=_overwrite(registry.GALLERY_FILE)),
                        f'{registry.GALLERY_FILE} is unreadable'),
    'gallery truncated': (
        dict(gallery=True,
             damage=lambda folder: os.truncate(os.path.join(folder, registry.GALLERY_FILE), 40)),
        f'{registry.GALLERY_FILE} is unreadable'),
    'saved_model.pb corrupt': (dict(damage=_overwrite(registry.SAVED_MODEL_FILE, at=0)),
                               f'{registry.SAVED_MODEL_FILE} cannot be read as a SavedModel'),
    'no variables': (dict(damage=lambda folder: shutil.rmtree(os.path.join(folder, 'variables'))),
                     f'no {registry.VARIABLES_INDEX}'),
    'render size not a number': (dict(card={'data': {'render_size': 'large'}}),
                                 "no usable render settings (data.render_size 'large'"),
}


@pytest.mark.parametrize('damage', sorted(DAMAGE))
def test_latest_is_the_newest_valid_version_and_damage_is_reported(tmp_path, caplog, damage):
  kwargs, reason = DAMAGE[damage]
  _version(tmp_path, 1)
  _version(tmp_path, 2)
  _version(tmp_path, 3, **kwargs)
  _version(tmp_path, 1, model='other')
  root = str(tmp_path)
  with caplog.at_level(logging.WARNING, logger='serving.registry'):
    assert registry.resolve(root, 'toy').version == 2
  assert any(reason in r.getMessage() and 'version 3' in r.getMessage() for r in caplog.records)
  assert [v.version for v in registry.list_versions(root, 'toy')] == [1, 2]
  with pytest.raises(registry.DamagedVersionError, match=r"'toy' version 3 cannot be used") as e:
    registry.resolve(root, 'toy', '3')
  assert reason in str(e.value) and 'usable versions: 1, 2' in str(e.value)
  rows = registry.summary_rows(root)
  assert [(r['model'], r['version']) for r in rows] == [('other', 1), ('toy', 1), ('toy', 2),
                                                        ('toy', 3)]
  assert [r['map'] for r in rows[:3]] == [0.5] * 3
  assert reason in rows[3]['skipped'] and set(rows[3]) == {'model', 'version', 'skipped'}


def test_a_model_without_any_valid_version_is_a_clear_error(tmp_path):
  _version(tmp_path, 4, card='{')
  _version(tmp_path, 5, card='null')
  with pytest.raises(registry.DamagedVersionError, match=r"'toy' has no usable version.*5: .*4: "):
    registry.resolve(str(tmp_path), 'toy')
  assert [r['version'] for r in registry.summary_rows(str(tmp_path)) if 'skipped' in r] == [4, 5]


def test_search_skips_versions_without_a_gallery(tmp_path):
  _version(tmp_path, 1, gallery=True)
  _version(tmp_path, 2)  # Pushed without examples: a model, but nothing to search.
  root = str(tmp_path)
  assert registry.resolve(root, 'toy').version == 2
  assert registry.resolve(root, 'toy', need_gallery=True).version == 1
  with pytest.raises(registry.DamagedVersionError, match='without a search gallery'):
    registry.resolve(root, 'toy', 2, need_gallery=True)
  assert len(registry.load_gallery(registry.resolve(root, 'toy', 1))) == 2
  with pytest.raises(registry.RegistryError, match=r"'toy' version 2 has no gallery.npz"):
    registry.load_gallery(registry.resolve(root, 'toy', 2))


def test_odd_card_fields_do_not_break_the_listing(tmp_path):
  _version(tmp_path, 1, card={'metrics': {'model': 1.0, 'map': 0.25, 'note': 'x', 'ok': True},
                              'pushed_at': {'when': 'now'}, 'gallery': [3]})
  _version(tmp_path, 2, card={'metrics': [0.5], 'gallery': {'size': 'many'}})
  assert registry.summary_rows(str(tmp_path)) == [
      {'model': 'toy', 'version': 1, 'pushed_at': None, 'gallery': None, 'map': 0.25},
      {'model': 'toy', 'version': 2, 'pushed_at': None, 'gallery': None}]


def test_what_clients_see_names_models_and_versions_not_paths(tmp_path):
  root = str(tmp_path / 'registry')
  _version(root, 1)
  _version(root, 2)
  _version(root, 3, card='{')
  errors = []
  for model, version in (('cnn', 'latest'), ('toy', '5'), ('toy', '3'), ('toy', '²'),
                         ('../registry', 'latest')):
    with pytest.raises(registry.RegistryError) as raised:
      registry.resolve(root, model, version)
    errors.append(str(raised.value))
  assert "no model 'cnn'; models with pushed versions: toy" in errors[0]
  assert "model 'toy' has no version '5'; it has 1, 2" in errors[1]
  assert "model 'toy' version 3 cannot be used" in errors[2]
  rows = registry.summary_rows(root)
  card = registry.resolve(root, 'toy').card
  for shown in errors + [json.dumps(rows), json.dumps(card)]:
    assert str(tmp_path) not in shown and 'registry/' not in shown


# The command line on such registries.

def _err(capsys):
  captured = capsys.readouterr()
  assert 'Traceback' not in captured.err
  return captured


@pytest.mark.parametrize('version', ['²', '9' * 5000, '007'])
def test_cli_refuses_a_bad_version_with_exit_code_2(tmp_path, capsys, version):
  _version(tmp_path, 7, gallery=True)
  query = tmp_path / 'q.png'
  query.write_bytes(_png())
  root = str(tmp_path)
  assert cli.main(['models', 'toy', '--version', version, '--registry', root]) == 2
  assert 'is neither "latest" nor a version number' in _err(capsys).err
  assert cli.main(['search', '--model', 'toy', '--query', str(query), '--version', version,
                   '--registry', root]) == 2
  assert 'is neither "latest" nor a version number' in _err(capsys).err


def test_cli_lists_valid_versions_and_reports_damaged_ones(tmp_path, capsys):
  _version(tmp_path, 1)
  _version(tmp_path, 2)
  _version(tmp_path, 3, card='{"model_name": "to')
  root = str(tmp_path)
  assert cli.main(['models', '--registry', root]) == 0
  out = _err(capsys)
  assert [line.split()[:2] for line in out.out.splitlines()[1:]] == [['toy', '1'], ['toy', '2']]
  assert 'skipped: toy version 3: model_card.json is not valid JSON (line 1' in out.err
  assert cli.main(['models', '--registry', root, '--json']) == 0
  rows = json.loads(_err(capsys).out)
  assert [r['version'] for r in rows] == [1, 2, 3] and 'skipped' in rows[2]
  # The newest valid card; model_card.md is missing here, so the JSON card is shown.
  assert cli.main(['models', 'toy', '--registry', root]) == 0
  assert json.loads(_err(capsys).out)['version'] == '2'
  assert cli.main(['models', 'toy', '--version', '3', '--registry', root]) == 2
  assert "'toy' version 3 cannot be used" in _err(capsys).err


def test_cli_models_with_only_damaged_versions_fails_with_a_message(tmp_path, capsys):
  _version(tmp_path, 3, card='[]')
  assert cli.main(['models', '--registry', str(tmp_path)]) == 1
  err = _err(capsys).err
  assert 'skipped: toy version 3' in err and 'no usable pushed models' in err


class _FakeSearcher:
  """Search results without a model, so the command gets as far as writing the grid."""

  def __init__(self, model_version, index='exact'):
    del index
    self.model_version = model_version
    self.gallery = registry.load_gallery(model_version)

  def search(self, queries, k):
    neighbours = [search.Neighbour(rank=1, index=0, id='box/1', category='box', split='test',
                                   distance=0.0)]
    return [search.Result(query=q, predicted='box', probability=0.9, neighbours=neighbours)
            for q in queries]


@pytest.mark.parametrize('out, message', [
    ('a_file/grid.png', 'is a file, not a folder'),
    ('a_folder', 'is a folder'),
    ('grid', 'no extension: not an image format'),
    ('grid.psd', '.psd: not an image format'),
])
def test_cli_search_refuses_an_out_path_it_cannot_write(tmp_path, capsys, monkeypatch, out,
                                                        message):
  _version(tmp_path, 1, gallery=True)
  (tmp_path / 'a_file').write_text('not a folder')
  (tmp_path / 'a_folder').mkdir()
  query = tmp_path / 'q.png'
  query.write_bytes(_png())
  monkeypatch.setattr(search, 'Searcher', _FakeSearcher)
  assert cli.main(['search', '--model', 'toy', '--query', str(query), '--out',
                   str(tmp_path / out), '--registry', str(tmp_path)]) == 2
  assert f'--out {tmp_path / out}: ' in (err := _err(capsys).err) and message in err
  # A path that can be written: the grid is written.
  assert cli.main(['search', '--model', 'toy', '--query', str(query), '--out',
                   str(tmp_path / 'new' / 'grid.png'), '--registry', str(tmp_path)]) == 0
  assert (tmp_path / 'new' / 'grid.png').stat().st_size > 0


def test_cli_search_reports_a_grid_that_fails_to_write(tmp_path, capsys, monkeypatch):
  _version(tmp_path, 1, gallery=True)
  query = tmp_path / 'q.png'
  query.write_bytes(_png())
  monkeypatch.setattr(search, 'Searcher', _FakeSearcher)

  def no_space(results, gallery, path):
    raise OSError(28, 'No space left on device')

  monkeypatch.setattr(search, 'write_grid', no_space)
  assert cli.main(['search', '--model', 'toy', '--query', str(query), '--out',
                   str(tmp_path / 'grid.png'), '--registry', str(tmp_path)]) == 1
  captured = _err(capsys)
  assert 'could not be written' in captured.err and 'No space left' in captured.err
  assert 'box/1' in captured.out  # The results were printed before.


@pytest.mark.parametrize('data', [[1, 2], {'render_size': '128'}, {'render_size': True},
                                  {'render_size': 10**6}, {'stroke_width': 0},
                                  {'render_size': 128, 'stroke_width': 2.5}])
def test_a_card_with_unusable_render_settings_is_a_damaged_version(tmp_path, data):
  folder = _version(tmp_path, 7, card={'model_name': 'toy', 'version': '7', 'data': data})
  with pytest.raises(registry.DamagedVersionError, match='render settings'):
    search.render_settings(registry.read_card(folder))
  assert search.render_settings({'data': {'render_size': 128, 'stroke_width': 2}}) == (128, 2)
