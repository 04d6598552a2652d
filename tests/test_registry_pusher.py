"""The RegistryPusher: what it pushes from a real (smoke) pipeline run, and what it refuses."""
import dataclasses
import datetime
import json
import os
import subprocess

import numpy as np
import pytest

from components import artifact_types
from components.evaluator import outputs as evaluation_outputs
from components.example_gen import outputs as example_gen_outputs
from components.pusher import executor as pusher_executor
from components.pusher import model_card
from domain import registry_store
from pipeline import results
from serving import registry
from tfx.types import standard_artifacts
from tests.conftest import ROOT

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
                             for key in evaluation_outputs.HEADLINE_METRICS}
  assert card['evaluation'] == evaluation_outputs.read_metrics(evaluation.uri)
  with open(os.path.join(version.path, registry.CATEGORIES_FILE)) as f:
    assert card['categories'] == f.read().split('\n')[:-1]
  assert card['data_manifest'] == example_gen_outputs.read_manifest(
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
  assert f'# skNet version {version.version}' in markdown
  assert f'| map | {card["metrics"]["map"]:.4f} |' in markdown


@pytest.mark.e2e
def test_gallery_is_the_evaluators_test_embeddings_with_the_examples_pngs(pushed):
  config, nodes, version = pushed
  gallery = registry.load_gallery(version)
  embeddings, categories, ids = evaluation_outputs.load_embeddings(
      nodes['EmbeddingEvaluator.sknet'].outputs['embeddings'][0].uri)
  np.testing.assert_array_equal(gallery.embedding, embeddings)
  assert list(gallery.id) == list(ids) and list(gallery.category) == list(categories)
  assert set(gallery.split) == {'test'}
  assert version.card['gallery']['size'] == len(gallery) == (
      config.num_categories * config.test_per_category)
  examples = _artifact(standard_artifacts.Examples,
                       nodes['QuickDrawExampleGen'].outputs['examples'][0])
  records = example_gen_outputs.read_split(examples, 'test')
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
    inputs['embeddings'] = [_artifact(artifact_types.Embeddings, evaluator['embeddings'][0])]
  return inputs


def _run_pusher(tmp_path, inputs, model_dir, gallery_splits):
  pushed_model = standard_artifacts.PushedModel()
  pushed_model.uri = str(tmp_path / 'pushed_model')
  os.makedirs(pushed_model.uri, exist_ok=True)
  exec_properties = {
      'push_destination': json.dumps({'filesystem': {'base_directory': model_dir}}),
      'custom_config': json.dumps({'model_name': 'sknet', 'gallery_splits': gallery_splits}),
  }
  pusher_executor.Executor().Do(inputs, {'pushed_model': [pushed_model]}, exec_properties)
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
  embeddings, _, ids = evaluation_outputs.load_embeddings(
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
  before = sorted(os.listdir(model_dir))

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
  assert sorted(os.listdir(model_dir)) == before
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
  assert model_card.code_version(str(tmp_path)) == {'git_commit': None, 'git_dirty': None}
