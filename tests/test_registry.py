"""The model registry's layout: atomic versioned publishing, the gallery, the reader API
(tests/test_registry_pusher.py: what the RegistryPusher pushes)."""
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import tensorflow as tf

from domain import registry_store
from serving import registry
from tests import registry_fixtures
from tests.conftest import ROOT


def _stage_fake(folder):
  """What a push stages, minus the SavedModel's weight: enough for the layout's rules."""
  registry_fixtures.write_model_files(folder)


def _cards(version):
  return {registry.MODEL_CARD_MARKDOWN: f'# toy version {version}\n',
          registry.MODEL_CARD_FILE: json.dumps({'model_name': 'toy', 'version': str(version),
                                                'metrics': {'map': 0.5}})}


def _publish(model_dir, now, **kwargs):
  return registry_store.publish(model_dir, _stage_fake, _cards, now=now, **kwargs)


def _entries(model_dir):
  return sorted(os.listdir(model_dir))


# Layout and publishing, without a pipeline.

def test_publish_numbers_versions_upwards_and_never_reuses_a_number(tmp_path):
  model_dir = str(tmp_path / 'toy')
  first, path = _publish(model_dir, now=1000)
  # Same second (a clock that stands still or goes back): the next number, not the same one.
  second, _ = _publish(model_dir, now=1000)
  third, _ = _publish(model_dir, now=900)
  assert (first, second, third) == (1000, 1001, 1002)
  assert path == os.path.join(model_dir, '1000')
  assert _entries(model_dir) == ['1000', '1001', '1002']  # No temporary folders left.
  assert _entries(path) == sorted(['saved_model.pb', 'variables', registry.MODEL_CARD_FILE,
                                   registry.MODEL_CARD_MARKDOWN])
  assert registry.version_numbers(model_dir) == [1000, 1001, 1002]
  assert registry.resolve(str(tmp_path), 'toy').version == 1002
  assert registry.resolve(str(tmp_path), 'toy', '1001').card['version'] == '1001'
  # A number whose folder exists, even empty (a claim left by a crash), is not handed out.
  os.makedirs(os.path.join(model_dir, '5000'))
  assert _publish(model_dir, now=5000)[0] == 5001
  assert _entries(os.path.join(model_dir, '5000')) == []


def test_a_push_failing_before_the_rename_leaves_the_registry_as_it_was(tmp_path, monkeypatch):
  model_dir = str(tmp_path / 'toy')
  _publish(model_dir, now=1000)

  def interrupted(source, destination):
    # Everything is staged, the card last; the claimed version folder is still empty.
    assert os.path.exists(os.path.join(source, 'saved_model.pb'))
    assert json.load(open(os.path.join(source, registry.MODEL_CARD_FILE)))['version'] == '2000'
    assert os.listdir(destination) == []
    raise KeyboardInterrupt

  monkeypatch.setattr(registry_store, '_rename', interrupted)
  with pytest.raises(KeyboardInterrupt):
    _publish(model_dir, now=2000)
  assert _entries(model_dir) == ['1000']  # Neither the staging folder nor the claim is left.
  assert registry.resolve(str(tmp_path), 'toy').version == 1000


def test_a_crash_between_copy_and_rename_is_invisible_to_readers(tmp_path):
  """A real process dies (os._exit) after staging: its temporary folder stays behind."""
  registry_dir = str(tmp_path)
  model_dir = os.path.join(registry_dir, 'toy')
  _publish(model_dir, now=1000)
  script = (
      'import json, os, sys\n'
      'sys.path.insert(0, sys.argv[1])\n'
      'from domain import registry_store\n'
      'def stage(folder):\n'
      '  open(os.path.join(folder, "saved_model.pb"), "w").write("model")\n'
      'def cards(version):\n'
      '  return {"model_card.json": json.dumps({"version": str(version)})}\n'
      'registry_store._rename = lambda source, destination: os._exit(3)\n'
      'registry_store.publish(sys.argv[2], stage, cards, now=2000)\n')
  crashed = subprocess.run([sys.executable, '-c', script, ROOT, model_dir], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
  assert crashed.returncode == 3, crashed.stderr
  leftovers = [name for name in _entries(model_dir) if name.startswith(registry.TEMP_PREFIX)]
  assert len(leftovers) == 1
  assert os.path.exists(os.path.join(model_dir, leftovers[0], registry.MODEL_CARD_FILE))
  assert _entries(os.path.join(model_dir, '2000')) == []  # The claim, empty.
  # Readers see the registry as before the crash.
  assert registry.list_models(registry_dir) == ['toy']
  assert [v.version for v in registry.list_versions(registry_dir, 'toy')] == [1000]
  assert registry.resolve(registry_dir, 'toy').version == 1000
  with pytest.raises(registry.RegistryError, match='2000'):
    registry.resolve(registry_dir, 'toy', 2000)
  # The next push is unaffected, and does not take the claimed number.
  assert _publish(model_dir, now=2000)[0] == 2001


def test_a_numeric_folder_without_its_model_card_is_not_a_version(tmp_path):
  # What a non-atomic (object store) copy can show for a moment: the card comes last.
  os.makedirs(tmp_path / 'toy' / '1000')
  assert registry.list_models(str(tmp_path)) == []
  assert registry.version_numbers(str(tmp_path / 'toy')) == []
  assert registry_store.next_version(str(tmp_path / 'toy'), now=5) == 1001


def test_resolve_names_what_exists_when_asked_for_what_does_not(tmp_path):
  _publish(str(tmp_path / 'toy'), now=1000)
  with pytest.raises(registry.RegistryError, match=r"no model 'cnn'.*toy"):
    registry.resolve(str(tmp_path), 'cnn')
  with pytest.raises(registry.RegistryError, match=r"no version '7'.*1000"):
    registry.resolve(str(tmp_path), 'toy', '7')
  with pytest.raises(registry.BadVersionError, match="'newest'"):
    registry.resolve(str(tmp_path), 'toy', 'newest')
  with pytest.raises(registry.RegistryError, match='none'):
    registry.resolve(str(tmp_path / 'empty'), 'toy')


@pytest.mark.parametrize('remote', [False, True])
def test_two_pushes_in_the_same_second_both_publish_under_different_numbers(tmp_path,
                                                                            monkeypatch,
                                                                            remote):
  model_dir = str(tmp_path / 'toy')
  original = registry_store.next_version
  both_counted = threading.Barrier(2, timeout=60)
  seen = threading.local()

  def same_number(folder, now=None):
    number = original(folder, now)
    if not getattr(seen, 'counted', False):  # Both compute the number before either claims.
      seen.counted = True
      both_counted.wait()
    return number

  monkeypatch.setattr(registry_store, 'next_version', same_number)
  outcomes = []

  def push():
    try:
      outcomes.append(_publish(model_dir, now=1000, remote=remote)[0])
    except Exception as e:  # pylint: disable=broad-except  # Reported by the assert below.
      outcomes.append(e)

  threads = [threading.Thread(target=push) for _ in range(2)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join(timeout=120)
  assert all(isinstance(v, int) for v in outcomes) and len(set(outcomes)) == 2, outcomes
  if not remote:
    assert sorted(outcomes) == [1000, 1001]
  versions = registry.list_versions(str(tmp_path), 'toy')
  assert [v.version for v in versions] == sorted(outcomes)
  assert [v.card['version'] for v in versions] == [str(v) for v in sorted(outcomes)]
  assert not [n for n in _entries(model_dir) if n.startswith('.')]
  for version in versions:
    assert not [n for n in _entries(version.path) if n.startswith('.')]


class _WatchedFiles:
  """tf.io.gfile as publishing uses it, on a local folder, checking after every change that no
  version folder shows model_card.json before all the files of its version. A folder rename
  is a copy file by file in name order, as on object stores."""

  def __init__(self, model_dir, expected):
    self._gfile = tf.io.gfile
    self.model_dir, self.expected, self.card_writes = model_dir, expected, []

  def __getattr__(self, name):
    return getattr(self._gfile, name)

  def check(self):
    for name in os.listdir(self.model_dir):
      folder = os.path.join(self.model_dir, name)
      if registry.is_version_name(name) and os.path.exists(
          os.path.join(folder, registry.MODEL_CARD_FILE)):
        missing = [f for f in self.expected if not os.path.exists(os.path.join(folder, f))]
        assert not missing, f'{registry.MODEL_CARD_FILE} visible in {name} before {missing}'

  def _changed(self, result=None):
    self.check()
    return result

  def makedirs(self, path):
    return self._changed(self._gfile.makedirs(path))

  def copy(self, source, destination, overwrite=False):
    return self._changed(self._gfile.copy(source, destination, overwrite))

  def remove(self, path):
    return self._changed(self._gfile.remove(path))

  def rmtree(self, path):
    return self._changed(self._gfile.rmtree(path))

  def rename(self, source, destination, overwrite=False):
    for folder, _, names in sorted(self._gfile.walk(source)):
      for name in sorted(names):
        target = os.path.join(destination, os.path.relpath(os.path.join(folder, name), source))
        self.makedirs(os.path.dirname(target))
        self.copy(os.path.join(folder, name), target, overwrite)
    self.rmtree(source)

  def GFile(self, path, mode='r'):  # pylint: disable=invalid-name
    watched = self

    class Watched(self._gfile.GFile):

      def close(self):
        super().close()
        if 'w' in mode:
          watched.card_writes += [path] if path.endswith(registry.MODEL_CARD_FILE) else []
          watched.check()

    return Watched(path, mode)


@pytest.mark.parametrize('remote', [False, True])
def test_the_model_card_never_appears_before_the_model_files(tmp_path, monkeypatch, remote):
  model_dir = str(tmp_path / 'toy')
  _publish(model_dir, now=1000, remote=remote)
  expected = ['saved_model.pb', 'variables/variables.index', registry.MODEL_CARD_MARKDOWN]
  watched = _WatchedFiles(model_dir, expected)
  monkeypatch.setattr(registry_store, 'tf_gfile', lambda: watched)
  rename = registry_store._rename

  def watched_rename(source, destination):
    rename(source, destination)
    watched.check()

  monkeypatch.setattr(registry_store, '_rename', watched_rename)
  version, path = _publish(model_dir, now=1000, remote=remote)
  assert version == 1001 and sorted(os.listdir(path)) == sorted(
      ['saved_model.pb', 'variables', registry.MODEL_CARD_FILE, registry.MODEL_CARD_MARKDOWN])
  # The card is written once: locally into the staging folder, remotely into the version.
  [card] = watched.card_writes
  staged = os.path.join(model_dir, registry.TEMP_PREFIX)
  assert card == os.path.join(path, registry.MODEL_CARD_FILE) if remote else card.startswith(
      staged)
  assert registry.resolve(str(tmp_path), 'toy').version == 1001


def test_gallery_round_trip_keeps_png_bytes_exactly(tmp_path):
  pngs = [b'\x89PNG\x00\x00', b'', b'abc\x00']  # Trailing NULs: no fixed-width bytes arrays.
  gallery = registry.Gallery(
      embedding=np.arange(6, dtype=np.float32).reshape(3, 2),
      category=np.array(['cat', 'dog', 'The Eiffel Tower']), id=np.array(['cat/1', 'dog/2', 'x/3']),
      split=np.array(['test'] * 3), png=pngs)
  path = str(tmp_path / registry.GALLERY_FILE)
  registry.write_gallery(path, gallery)
  read = registry.read_gallery(path)
  assert read.png == pngs
  np.testing.assert_array_equal(read.embedding, gallery.embedding)
  assert list(read.category) == list(gallery.category)
  assert list(read.id) == list(gallery.id)
