"""The model registry: atomic versioned pushes, the model card, the gallery, the reader API."""
import dataclasses
import datetime
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import tensorflow as tf

from components import embedding_evaluator
from components import quickdraw_example_gen
from components import registry_pusher
from components import registry_store
from pipeline import results
from serving import registry
from tfx.types import standard_artifacts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _stage_fake(folder, payload='model'):
  """What a push stages, minus the SavedModel's weight: enough for the layout's rules."""
  os.makedirs(os.path.join(folder, 'variables'))
  for name in ('variables/variables.index', 'saved_model.pb'):
    with open(os.path.join(folder, name), 'w') as f:
      f.write(payload)


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
      'from components import registry_store\n'
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


# The RegistryPusher in a real (smoke) pipeline run.

def _artifact(cls, proto):
  artifact = cls()
  artifact.set_mlmd_artifact(proto)
  return artifact


@pytest.fixture(scope='module')
def pushed(smoke_registry):
  config, run_id = smoke_registry
  nodes = results.node_runs(results.open_store(config.metadata_path), config.pipeline_name,
                            run_id)
  return config, nodes, registry.resolve(config.registry_dir, 'sknet')


@pytest.mark.e2e
def test_pushed_version_is_listed_resolved_and_loaded(pushed):
  config, nodes, version = pushed
  artifact = nodes['Pusher.sknet'].outputs['pushed_model'][0]
  assert artifact.custom_properties['pushed'].int_value == 1
  assert artifact.custom_properties['pushed_destination'].string_value == version.path
  assert artifact.custom_properties['pushed_version'].string_value == str(version.version)
  # The artifact keeps the card of what it pushed.
  assert registry.read_card(artifact.uri) == version.card
  assert registry.list_models(config.registry_dir) == sorted(config.models)
  assert [v.version for v in registry.list_versions(config.registry_dir, 'sknet')] == [
      version.version]
  assert not [n for n in os.listdir(os.path.dirname(version.path))
              if n.startswith(registry.TEMP_PREFIX)]
  rows = [r for r in registry.summary_rows(config.registry_dir) if r['model'] == 'sknet']
  assert rows == [dict(model='sknet', version=version.version, pushed_at=version.card['pushed_at'],
                       gallery=config.num_categories * config.test_per_category,
                       **version.card['metrics'])]
  model = registry.load_model(version)
  assert {'serving_default', 'embed', 'serving_png'} <= set(model.signatures)


@pytest.mark.e2e
def test_model_card_holds_metrics_data_training_and_lineage(pushed, smoke_registry):
  config, nodes, version = pushed
  card = version.card
  evaluation = nodes['EmbeddingEvaluator.sknet'].outputs['evaluation'][0]
  blessing = nodes['EmbeddingEvaluator.sknet'].outputs['blessing'][0]
  examples = nodes['QuickDrawExampleGen'].outputs['examples'][0]
  assert card['model_name'] == 'sknet' and card['version'] == str(version.version)
  assert card['metrics'] == {key: pytest.approx(blessing.custom_properties[key].double_value)
                             for key in embedding_evaluator.HEADLINE_METRICS}
  assert card['evaluation'] == embedding_evaluator.read_metrics(evaluation.uri)
  with open(os.path.join(version.path, registry.CATEGORIES_FILE)) as f:
    assert card['categories'] == f.read().split('\n')[:-1]
  assert card['data_manifest'] == quickdraw_example_gen.read_manifest(
      _artifact(standard_artifacts.Examples, examples))
  assert card['data']['seed'] == config.seed and card['data']['source'] == config.source
  assert card['training'] == dataclasses.asdict(config.training['sknet'])
  # The signatures as the SavedModel declares them.
  signatures = card['signatures']
  assert set(signatures) >= {'serving_default', 'embed', 'serving_png'}
  assert list(signatures['serving_png']['inputs']) == ['image_png']
  assert {'embedding', 'top5_categories', 'probabilities'} <= set(
      signatures['serving_png']['outputs'])
  assert 'embedding' not in signatures['serving_default']['outputs']
  lineage = card['lineage']
  assert lineage['pipeline_name'] == config.pipeline_name
  assert lineage['pipeline_run_id'] == smoke_registry[1]
  for key, node, output in (('model_artifact', 'Trainer.sknet', 'model'),
                            ('blessing_artifact', 'EmbeddingEvaluator.sknet', 'blessing'),
                            ('evaluation_artifact', 'EmbeddingEvaluator.sknet', 'evaluation'),
                            ('embeddings_artifact', 'EmbeddingEvaluator.sknet', 'embeddings'),
                            ('examples_artifact', 'QuickDrawExampleGen', 'examples')):
    artifact = nodes[node].outputs[output][0]
    assert lineage[key] == {'id': artifact.id, 'uri': artifact.uri}, key
  head = subprocess.run(['git', '-C', ROOT, 'rev-parse', 'HEAD'], capture_output=True,
                        text=True)
  assert card['code_version']['git_commit'] == (head.stdout.strip() if head.returncode == 0
                                                else None)
  pushed_at = datetime.datetime.fromisoformat(card['pushed_at'])
  assert abs((datetime.datetime.now(datetime.timezone.utc) - pushed_at).days) < 1
  with open(os.path.join(version.path, registry.MODEL_CARD_MARKDOWN)) as f:
    markdown = f.read()
  assert f'# sknet version {version.version}' in markdown
  assert f'| map | {card["metrics"]["map"]:.4f} |' in markdown


@pytest.mark.e2e
def test_gallery_is_the_evaluators_test_embeddings_with_the_examples_pngs(pushed):
  config, nodes, version = pushed
  gallery = registry.load_gallery(version)
  embeddings, categories, ids = embedding_evaluator.load_embeddings(
      nodes['EmbeddingEvaluator.sknet'].outputs['embeddings'][0].uri)
  np.testing.assert_array_equal(gallery.embedding, embeddings)
  assert list(gallery.id) == list(ids) and list(gallery.category) == list(categories)
  assert set(gallery.split) == {'test'}
  assert version.card['gallery']['size'] == len(gallery) == (
      config.num_categories * config.test_per_category)
  examples = _artifact(standard_artifacts.Examples,
                       nodes['QuickDrawExampleGen'].outputs['examples'][0])
  records = quickdraw_example_gen.read_split(examples, 'test')
  png_by_id = dict(zip(records['id'], records['png']))
  assert gallery.png == [png_by_id[i] for i in gallery.id]


def _pusher_inputs(nodes, with_embeddings=True):
  evaluator = nodes['EmbeddingEvaluator.sknet'].outputs
  inputs = {
      'model': [_artifact(standard_artifacts.Model, nodes['Trainer.sknet'].outputs['model'][0])],
      'model_blessing': [_artifact(standard_artifacts.ModelBlessing, evaluator['blessing'][0])],
      'examples': [_artifact(standard_artifacts.Examples,
                             nodes['QuickDrawExampleGen'].outputs['examples'][0])],
      'evaluation': [_artifact(standard_artifacts.ModelEvaluation, evaluator['evaluation'][0])],
  }
  if with_embeddings:
    inputs['embeddings'] = [_artifact(embedding_evaluator.Embeddings, evaluator['embeddings'][0])]
  return inputs


def _run_pusher(tmp_path, inputs, model_dir, gallery_splits):
  pushed_model = standard_artifacts.PushedModel()
  pushed_model.uri = str(tmp_path / 'pushed_model')
  os.makedirs(pushed_model.uri, exist_ok=True)
  exec_properties = {
      'push_destination': json.dumps({'filesystem': {'base_directory': model_dir}}),
      'custom_config': json.dumps({'model_name': 'sknet', 'gallery_splits': gallery_splits}),
  }
  registry_pusher.Executor().Do(inputs, {'pushed_model': [pushed_model]}, exec_properties)
  return pushed_model


@pytest.mark.e2e
def test_pusher_embeds_other_gallery_splits_itself(pushed, tmp_path):
  config, nodes, _ = pushed
  model_dir = str(tmp_path / 'registry' / 'sknet')
  artifact = _run_pusher(tmp_path, _pusher_inputs(nodes, with_embeddings=False), model_dir,
                         ['train', 'test'])
  version = registry.resolve(str(tmp_path / 'registry'), 'sknet')
  assert artifact.get_string_custom_property('pushed_destination') == version.path
  gallery = registry.load_gallery(version)
  train = gallery.split == 'train'
  assert train.sum() == config.num_categories * config.train_per_category
  assert (~train).sum() == config.num_categories * config.test_per_category
  # Without the Evaluator's embeddings the test split is embedded here: same numbers, from
  # the model's embed signature on the same examples.
  embeddings, _, ids = embedding_evaluator.load_embeddings(
      nodes['EmbeddingEvaluator.sknet'].outputs['embeddings'][0].uri)
  row = {i: n for n, i in enumerate(gallery.id)}
  np.testing.assert_allclose(gallery.embedding[[row[i] for i in ids]], embeddings, rtol=1e-4,
                             atol=1e-4)
  assert version.card['gallery']['splits'] == ['test', 'train']
  assert version.card['lineage']['embeddings_artifact'] is None


@pytest.mark.e2e
def test_pusher_interrupted_before_the_rename_publishes_nothing(pushed, tmp_path, monkeypatch):
  _, nodes, _ = pushed
  model_dir = str(tmp_path / 'registry' / 'sknet')
  _run_pusher(tmp_path, _pusher_inputs(nodes), model_dir, ['test'])
  before = _entries(model_dir)

  def interrupted(source, destination):
    # Everything is staged: SavedModel, gallery, both cards (with the claimed number).
    for name in ('saved_model.pb', registry.GALLERY_FILE, registry.MODEL_CARD_FILE,
                 registry.MODEL_CARD_MARKDOWN):
      assert os.path.exists(os.path.join(source, name)), name
    assert registry.read_card(source)['version'] == os.path.basename(destination)
    raise RuntimeError('simulated crash between copy and rename')

  monkeypatch.setattr(registry_store, '_rename', interrupted)
  with pytest.raises(RuntimeError, match='simulated crash'):
    _run_pusher(tmp_path, _pusher_inputs(nodes), model_dir, ['test'])
  assert _entries(model_dir) == before
  assert len(registry.list_versions(str(tmp_path / 'registry'), 'sknet')) == 1


def test_not_blessed_model_is_not_pushed(tmp_path):
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = str(tmp_path / 'blessing')
  blessing.set_int_custom_property('blessed', 0)
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / 'model')
  artifact = _run_pusher(tmp_path, {'model': [model], 'model_blessing': [blessing]},
                         str(tmp_path / 'registry' / 'sknet'), ['test'])
  assert artifact.get_int_custom_property('pushed') == 0
  assert not os.path.exists(tmp_path / 'registry')


def test_code_version_is_tolerant_outside_a_git_checkout(tmp_path):
  assert registry_pusher.code_version(str(tmp_path)) == {'git_commit': None, 'git_dirty': None}
