"""The whole pipeline on the smoke profile, checked through ML Metadata, then run again."""
import io
import math
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2

from components import artifact_types
from components.evaluator import outputs as evaluation_outputs
from components.example_gen import outputs as example_gen_outputs
from components.model_comparison import executor as comparison_executor
from components.pusher import model_card
from domain import registry_store
from pipeline import config as config_lib
from pipeline import results

pytestmark = pytest.mark.e2e

MODELS = config_lib.MODEL_NAMES
EXPECTED_OUTPUTS = {
    'QuickDrawExampleGen': ['examples', 'manifest'],
    'StatisticsGen': ['statistics'],
    'ImportSchemaGen': ['schema'],
    'ExampleValidator': ['anomalies'],
    'Transform': ['transform_graph'],  # Plus statistics and schemas of its own.
    **{f'Trainer.{m}': ['model', 'model_run'] for m in MODELS},
    **{f'EmbeddingEvaluator.{m}': ['blessing', 'embeddings', 'evaluation'] for m in MODELS},
    **{f'Pusher.{m}': ['pushed_model'] for m in MODELS},
    'ModelComparison': ['comparison'],
}


@pytest.fixture(scope='module')
def smoke(smoke_run):
  config, first, second = smoke_run
  store = results.open_store(config.metadata_path)
  return (config, results.node_runs(store, config.pipeline_name, first),
          results.node_runs(store, config.pipeline_name, second))


def _single(nodes, node_id, key):
  artifacts = nodes[node_id].outputs[key]
  assert len(artifacts) == 1, (node_id, key)
  return artifacts[0]


def test_every_component_ran_and_produced_its_artifacts(smoke):
  _, nodes, _ = smoke
  assert set(nodes) == set(EXPECTED_OUTPUTS)
  for node_id, keys in EXPECTED_OUTPUTS.items():
    assert nodes[node_id].state == 'COMPLETE', node_id
    assert set(keys) <= set(nodes[node_id].outputs), node_id
    for key in keys:
      assert tf.io.gfile.listdir(_single(nodes, node_id, key).uri), (node_id, key)


def test_sampling_manifest_is_its_own_artifact_with_the_counts(smoke):
  config, nodes, _ = smoke
  artifact = _single(nodes, 'QuickDrawExampleGen', 'manifest')
  assert artifact.type == artifact_types.SamplingManifest.TYPE_NAME
  manifest = example_gen_outputs.read_manifest(artifact)
  assert manifest['seed'] == config.seed and manifest['source'] == config.source
  assert len(manifest['categories']) == config.num_categories
  for row in manifest['categories']:
    assert (row['train'], row['test']) == (config.train_per_category, config.test_per_category)
    assert row['read'] >= row['train'] + row['test'] + row['duplicates_removed']
  assert manifest['totals']['train'] == config.num_categories * config.train_per_category
  assert artifact.custom_properties['train'].int_value == manifest['totals']['train']
  summary = results.data_summary(nodes)
  assert f"{manifest['totals']['read']} drawings read" in summary


def test_examples_match_the_schema(smoke):
  _, nodes, _ = smoke
  anomalies_uri = _single(nodes, 'ExampleValidator', 'anomalies').uri
  for split in ('train', 'test'):
    anomalies = anomalies_pb2.Anomalies()
    with tf.io.gfile.GFile(os.path.join(anomalies_uri, f'Split-{split}', 'SchemaDiff.pb'),
                           'rb') as f:
      anomalies.ParseFromString(f.read())
    assert not anomalies.anomaly_info, (split, anomalies)


@pytest.mark.parametrize('model', MODELS)
def test_metrics_are_in_range_and_recorded_in_metadata(smoke, model):
  config, nodes, _ = smoke
  evaluation = _single(nodes, f'EmbeddingEvaluator.{model}', 'evaluation')
  metrics = evaluation_outputs.read_metrics(evaluation.uri)
  for key in ('train_accuracy', 'test_accuracy', 'map'):
    assert 0.0 <= metrics[key] <= 1.0, key
    assert evaluation.custom_properties[key].double_value == pytest.approx(metrics[key], abs=1e-6)
  assert metrics['train_examples'] == config.num_categories * config.train_per_category
  assert metrics['test_examples'] == config.num_categories * config.test_per_category
  assert metrics['map_queries'] == metrics['test_examples']
  assert metrics['embedding_dim'] == 1024
  assert metrics['num_categories'] == config.num_categories
  # The lowest possible AP: every relevant item (R of them among N others) ranked last.
  relevant, others = config.test_per_category - 1, metrics['test_examples'] - 1
  worst = np.mean([k / (others - relevant + k) for k in range(1, relevant + 1)])
  assert metrics['map'] >= worst - 1e-12
  embeddings, categories, ids = evaluation_outputs.load_embeddings(
      _single(nodes, f'EmbeddingEvaluator.{model}', 'embeddings').uri)
  assert embeddings.shape == (metrics['test_examples'], 1024)
  assert len(set(ids)) == len(ids) == len(categories)


@pytest.mark.parametrize('model', MODELS)
def test_full_metrics_and_per_query_results(smoke, model):
  config, nodes, _ = smoke
  metrics = evaluation_outputs.read_metrics(
      _single(nodes, f'EmbeddingEvaluator.{model}', 'evaluation').uri)
  test = metrics['classification']['test']
  # Top-5 of 3 categories is 1.0 by construction: its computation is tested on many classes
  # (test_classification_metrics).
  assert test['top1'] == metrics['test_accuracy'] <= test['top5']
  assert np.sum(test['confusion_matrix']) == metrics['test_examples']
  assert set(test['per_class']) == set(metrics['classification']['categories'])
  for distance in ('l2', 'cosine'):
    section = metrics['retrieval'][distance]
    assert section['queries'] == metrics['test_examples']
    assert 0.0 <= section['map'] <= 1.0 and len(section['pr_curve_11pt']['precision']) == 11
  assert metrics['retrieval']['l2']['map'] == metrics['map']
  assert 0.0 < metrics['floors']['random_map'] < 1.0
  assert 0.0 <= metrics['floors']['raw_pixels_map'] <= 1.0
  assert metrics['floors']['raw_pixels_dim'] == config.image_size ** 2
  data = evaluation_outputs.load_per_query(
      _single(nodes, f'EmbeddingEvaluator.{model}', 'embeddings').uri)
  assert np.nanmean(data['ap_l2']) == pytest.approx(metrics['map'], abs=1e-12)
  assert data['neighbors_l2'].shape == (metrics['test_examples'], 10)
  assert sorted(data['class_names']) == sorted(metrics['classification']['categories'])


def test_comparison_of_the_two_models_is_recorded(smoke):
  _, nodes, _ = smoke
  artifact = _single(nodes, 'ModelComparison', 'comparison')
  assert artifact.type == artifact_types.Comparison.TYPE_NAME
  comparison = comparison_executor.read_comparison(artifact.uri)
  assert comparison['models'] == list(MODELS)
  rows = {row['metric']: row for row in comparison['rows']}
  for model in MODELS:
    metrics = evaluation_outputs.read_metrics(
        _single(nodes, f'EmbeddingEvaluator.{model}', 'evaluation').uri)
    assert rows['retrieval.l2.map']['values'][model] == pytest.approx(metrics['map'])
    assert rows['classification.test.top1']['values'][model] == pytest.approx(
        metrics['test_accuracy'])
  assert tf.io.gfile.exists(os.path.join(artifact.uri, comparison_executor.COMPARISON_MARKDOWN))
  # The paired difference, from both Evaluators' per-drawing outcomes (first - second).
  first, second = (evaluation_outputs.read_metrics(
      _single(nodes, f'EmbeddingEvaluator.{model}', 'evaluation').uri) for model in MODELS)
  paired = comparison['paired_difference']
  assert paired is not None, 'ModelComparison was not given the two Embeddings artifacts'
  assert paired['test_drawings'] == first['test_examples']
  assert paired['test_accuracy']['difference'] == pytest.approx(
      first['test_accuracy'] - second['test_accuracy'])
  assert paired['map']['difference'] == pytest.approx(first['map'] - second['map'])
  for key in ('test_accuracy', 'map'):
    low, high = paired[key]['ci95']
    assert low <= paired[key]['difference'] <= high


@pytest.mark.parametrize('model', MODELS)
def test_blessed_model_was_pushed_with_a_model_card(smoke, model):
  config, nodes, _ = smoke
  blessing = _single(nodes, f'EmbeddingEvaluator.{model}', 'blessing')
  assert blessing.custom_properties['blessed'].int_value == 1
  # Blessed by a threshold above what a random ranking and raw pixels reach on the same data.
  metrics = evaluation_outputs.read_metrics(
      _single(nodes, f'EmbeddingEvaluator.{model}', 'evaluation').uri)
  floors = metrics['floors']
  assert metrics['thresholds']['min_map'] == config.min_map > floors['raw_pixels_map'] > (
      floors['random_map'])
  pushed = _single(nodes, f'Pusher.{model}', 'pushed_model')
  assert pushed.custom_properties['pushed'].int_value == 1
  destination = pushed.custom_properties['pushed_destination'].string_value
  assert os.path.dirname(destination) == os.path.join(config.registry_dir, model)
  assert tf.io.gfile.exists(os.path.join(destination, 'saved_model.pb'))
  card = registry_store.read_card(destination)
  assert card['model_name'] == model
  assert card['metrics'] == {k: pytest.approx(blessing.custom_properties[k].double_value)
                             for k in ('train_accuracy', 'test_accuracy', 'map')}
  assert len(card['categories']) == config.num_categories
  assert card['data']['seed'] == config.seed
  assert card['lineage']['model_artifact']['uri'] == _single(
      nodes, f'Trainer.{model}', 'model').uri
  # Which precision the Trainer chose, and what it did, travel with the model.
  run = card['training_run']
  assert run['precision'] in ('float32', 'mixed_bfloat16', 'mixed_float16')
  assert run['steps'] == run['epochs'] * math.ceil(
      config.num_categories * config.train_per_category / config.training[model].batch_size)
  assert run['precision'] in model_card.model_card_markdown(card)


def test_second_identical_run_is_served_from_cache(smoke):
  _, first, second = smoke
  assert set(second) == set(first)
  for node_id, node in second.items():
    assert node.state == 'CACHED', node_id
    for key, artifacts in node.outputs.items():
      assert [a.id for a in artifacts] == [a.id for a in first[node_id].outputs[key]]


def test_exported_model_serves_examples_and_png_alike(smoke):
  _, nodes, _ = smoke
  pushed = _single(nodes, 'Pusher.sknet', 'pushed_model')
  model = tf.saved_model.load(pushed.custom_properties['pushed_destination'].string_value)
  assert {'serving_default', 'embed', 'serving_png'} <= set(model.signatures)
  files = tf.io.gfile.glob(os.path.join(
      _single(nodes, 'QuickDrawExampleGen', 'examples').uri, 'Split-test', '*'))
  serialized = next(iter(tf.data.TFRecordDataset(files, compression_type='GZIP').batch(4)))
  pngs = [tf.train.Example.FromString(s).features.feature['image_png'].bytes_list.value[0]
          for s in serialized.numpy()]
  classified = model.signatures['serving_default'](examples=serialized)
  embedded = model.signatures['embed'](examples=serialized)
  # A client's own PNG, as RGB at another size: the model converts and resizes it itself.
  rgb_pngs = []
  for png in pngs:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(png)).convert('RGB').save(buffer, format='PNG')
    rgb_pngs.append(buffer.getvalue())
  from_png = model.signatures['serving_png'](image_png=tf.constant(pngs))
  from_rgb = model.signatures['serving_png'](image_png=tf.constant(rgb_pngs))
  assert embedded['embedding'].shape == (4, 1024)
  np.testing.assert_allclose(classified['probabilities'].numpy().sum(axis=1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(classified['category'].numpy(), from_png['category'].numpy())
  np.testing.assert_allclose(embedded['embedding'].numpy(), from_png['embedding'].numpy(),
                             rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(from_rgb['probabilities'].numpy(), from_png['probabilities'].numpy(),
                             atol=0.02)
  # The label TFMA evaluates against: the true category's index in the model's vocabulary.
  labels = model.signatures['transform_features'](examples=serialized)['label'].numpy()
  vocabulary = registry_store.read_card(
      pushed.custom_properties['pushed_destination'].string_value)['categories']
  true = [tf.train.Example.FromString(s).features.feature['category'].bytes_list.value[0]
          .decode() for s in serialized.numpy()]
  assert [vocabulary[i] for i in labels] == true
