"""The EmbeddingEvaluator's executor on real examples and a small real SavedModel.

The model honours the Trainer's export contract (an `embed` signature: serialized tf.Examples
-> embedding, probabilities, category; assets.extra/categories.txt) with a fixed, readable
rule instead of a trained CNN: the embedding is the image, the class its best template.
"""
import io
import json
import os

import numpy as np
from PIL import Image
import pytest
from sklearn.metrics import average_precision_score
import tensorflow as tf
from tfx.types import standard_artifacts

from components import confidence
from components import embedding_evaluator
from components import retrieval

SIZE = 8
CATEGORIES = ['box', 'line', 'zig zag']
TRAIN_PER_CATEGORY, TEST_PER_CATEGORY = 6, 5


def _image(category_index: int, rng) -> np.ndarray:
  """A bright 3x3 square at the category's place on noise; ink = 255."""
  image = rng.integers(0, 230, size=(SIZE, SIZE)).astype(np.uint8)
  at = 2 * category_index
  image[at:at + 3, at:at + 3] = 255
  return image


def _example(image, category, drawing_id) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='PNG')
  feature = lambda value: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
  return tf.train.Example(features=tf.train.Features(feature={
      'image_png': feature(buffer.getvalue()), 'category': feature(category.encode()),
      'drawing_id': feature(drawing_id.encode())})).SerializeToString()


def _write_examples(root, extra_test=()):
  rng = np.random.default_rng(0)
  examples = standard_artifacts.Examples()
  examples.uri = os.path.join(root, 'examples')
  examples.split_names = '["train", "test"]'
  for split, per_category in (('train', TRAIN_PER_CATEGORY), ('test', TEST_PER_CATEGORY)):
    records = [_example(_image(c, rng), name, f'{split}-{name}-{i}')
               for c, name in enumerate(CATEGORIES) for i in range(per_category)]
    if split == 'test':
      records += [_example(_image(c, rng), name, f'extra-{i}')
                  for i, (c, name) in enumerate(extra_test)]
    os.makedirs(os.path.join(examples.uri, f'Split-{split}'))
    with tf.io.TFRecordWriter(os.path.join(examples.uri, f'Split-{split}', 'data.gz'),
                              options='GZIP') as writer:
      for record in records:
        writer.write(record)
  return examples


class _TemplateModel(tf.Module):

  def __init__(self):
    super().__init__()
    templates = np.zeros((len(CATEGORIES), SIZE * SIZE), np.float32)
    for c in range(len(CATEGORIES)):
      mask = np.zeros((SIZE, SIZE), np.float32)
      mask[2 * c:2 * c + 3, 2 * c:2 * c + 3] = 1
      templates[c] = mask.reshape(-1)
    self.templates = tf.constant(templates)
    self.categories = tf.constant(CATEGORIES)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def embed(self, examples):
    png = tf.io.parse_example(examples, {'image_png': tf.io.FixedLenFeature([], tf.string)})
    images = tf.map_fn(lambda p: tf.cast(tf.io.decode_png(p, channels=1), tf.float32),
                       png['image_png'], fn_output_signature=tf.TensorSpec([SIZE, SIZE, 1]))
    embedding = tf.reshape(images, [-1, SIZE * SIZE]) / 255.0
    probabilities = tf.nn.softmax(4.0 * tf.matmul(embedding, self.templates, transpose_b=True))
    class_id = tf.argmax(probabilities, axis=-1)
    return {'embedding': embedding, 'probabilities': probabilities,
            'category': tf.gather(self.categories, class_id)}


@pytest.fixture(scope='module')
def model_artifact(tmp_path_factory):
  model = standard_artifacts.Model()
  model.uri = str(tmp_path_factory.mktemp('model'))
  model.id = 7
  serving_dir = os.path.join(model.uri, 'Format-Serving')
  module = _TemplateModel()
  tf.saved_model.save(module, serving_dir, signatures={'embed': module.embed})
  os.makedirs(os.path.join(serving_dir, 'assets.extra'))
  with open(os.path.join(serving_dir, 'assets.extra', 'categories.txt'), 'w') as f:
    f.write('\n'.join(CATEGORIES) + '\n')
  return model


def _run(root, examples, model, **parameters):
  outputs = {}
  for key, artifact_class in (('evaluation', standard_artifacts.ModelEvaluation),
                              ('embeddings', embedding_evaluator.Embeddings),
                              ('blessing', standard_artifacts.ModelBlessing)):
    artifact = artifact_class()
    artifact.uri = os.path.join(root, key)
    os.makedirs(artifact.uri)
    outputs[key] = [artifact]
  executor = embedding_evaluator.EmbeddingEvaluator.EXECUTOR_SPEC.executor_class()
  executor.Do({'examples': [examples], 'model': [model]}, outputs,
              {'model_name': 'sknet', 'raw_pixels_size': SIZE, **parameters})
  return {key: value[0] for key, value in outputs.items()}


@pytest.fixture(scope='module')
def evaluated(tmp_path_factory, model_artifact):
  root = str(tmp_path_factory.mktemp('evaluated'))
  examples = _write_examples(root, extra_test=[(0, 'lonely')])  # A category the model lacks.
  return _run(root, examples, model_artifact, min_test_accuracy=0.5, min_map=0.2)


def _strict_json(path):
  with open(path) as f:
    return json.loads(f.read(), parse_constant=lambda name: pytest.fail(f'{name} in JSON'))


def test_metrics_json_follows_the_schema_and_matches_independent_numbers(evaluated):
  metrics = _strict_json(os.path.join(evaluated['evaluation'].uri, 'metrics.json'))
  data = embedding_evaluator.load_per_query(evaluated['embeddings'].uri)
  n_test = len(CATEGORIES) * TEST_PER_CATEGORY + 1
  assert metrics['schema_version'] == 3
  assert metrics['test_examples'] == n_test == len(data['id'])
  assert metrics['train_examples'] == len(CATEGORIES) * TRAIN_PER_CATEGORY
  assert metrics['test_accuracy'] == pytest.approx(
      np.mean(data['predicted'] == data['category']), abs=1e-12)
  assert metrics['classification']['test']['unknown'] == ['lonely']
  assert metrics['classification']['categories'] == CATEGORIES
  # The lonely drawing is not a query but is still a result of the others.
  assert metrics['map_queries_without_relevant'] == 1
  assert metrics['counts']['categories_with_single_test_drawing'] == ['lonely']
  assert metrics['retrieval']['l2']['per_category_ap']['lonely'] is None
  assert list(metrics['counts']['test_per_category']) == CATEGORIES + ['lonely']
  expected = []
  for q in range(n_test):
    keep = np.arange(n_test) != q
    relevant = data['category'][keep] == data['category'][q]
    if relevant.any():
      distances = np.linalg.norm(data['embedding'][keep] - data['embedding'][q], axis=1)
      expected.append(average_precision_score(relevant, -distances))
  assert metrics['map'] == pytest.approx(np.mean(expected), abs=1e-9)
  assert metrics['retrieval']['l2']['map'] == metrics['map']
  assert metrics['retrieval']['cosine']['extra'] is True
  assert set(metrics['retrieval']['l2']['precision_at_k']) == {'1', '5', '10', '50'}
  assert len(metrics['retrieval']['l2']['pr_curve_11pt']['precision']) == 11
  # The embedding here is the raw image: the raw-pixel floor is the same retrieval.
  assert metrics['raw_pixels_map'] == pytest.approx(metrics['map'], abs=1e-9)
  assert metrics['floors']['raw_pixels_dim'] == SIZE * SIZE
  assert metrics['random_map'] == pytest.approx(retrieval.random_ranking_map(
      data['category'])['random_map'])
  assert metrics['map'] > metrics['random_map']
  # The intervals resample these very drawings and queries.
  correct = (data['predicted'] == data['category']).astype(float)
  assert metrics['test_accuracy_ci95'] == confidence.mean_interval(correct)
  assert metrics['map_ci95'] == confidence.mean_interval(data['ap_l2'])
  for key in embedding_evaluator.INTERVALS:
    interval = metrics[key]
    assert interval[0] <= metrics[key[:-len('_ci95')]] <= interval[1], key
  for key in embedding_evaluator.HEADLINE_METRICS + embedding_evaluator.EXTRA_PROPERTIES:
    for artifact in (evaluated['evaluation'], evaluated['blessing']):
      assert artifact.get_float_custom_property(key) == pytest.approx(metrics[key]), key


def test_per_query_arrays(evaluated):
  data = embedding_evaluator.load_per_query(evaluated['embeddings'].uri)
  embeddings, categories, ids = embedding_evaluator.load_embeddings(evaluated['embeddings'].uri)
  n = len(ids)
  assert embeddings.shape == (n, SIZE * SIZE) and len(categories) == n
  assert data['probabilities'].shape == (n, len(CATEGORIES))
  assert data['class_names'].tolist() == CATEGORIES
  for metric in ('l2', 'cosine'):
    assert data[f'neighbors_{metric}'].shape == (n, 10)
    assert np.isnan(data[f'ap_{metric}']).sum() == 1
  nearest = data['neighbors_l2'][:, 0]
  direct = np.linalg.norm(embeddings - embeddings[nearest], axis=1)
  np.testing.assert_allclose(data['neighbor_distances_l2'][:, 0], direct, rtol=1e-6)
  assert (nearest != np.arange(n)).all()


def test_blessed_when_thresholds_are_met(evaluated):
  metrics = embedding_evaluator.read_metrics(evaluated['evaluation'].uri)
  assert metrics['blessed'] is True
  assert [c['name'] for c in metrics['blessing']['checks']] == ['min_test_accuracy', 'min_map']
  assert evaluated['blessing'].get_int_custom_property('blessed') == 1
  assert os.listdir(evaluated['blessing'].uri) == ['BLESSED']


def test_not_blessed_below_a_threshold(tmp_path, model_artifact):
  examples = _write_examples(str(tmp_path))
  outputs = _run(str(tmp_path), examples, model_artifact, min_test_accuracy=0.5, min_map=0.999)
  metrics = embedding_evaluator.read_metrics(outputs['evaluation'].uri)
  assert metrics['blessed'] is False
  assert [c['passed'] for c in metrics['blessing']['checks']] == [True, False]
  assert outputs['blessing'].get_int_custom_property('blessed') == 0
  assert os.listdir(outputs['blessing'].uri) == ['NOT_BLESSED']


def _write_card(registry, version, metrics):
  folder = os.path.join(registry, 'sknet', version)
  os.makedirs(folder)
  with open(os.path.join(folder, 'model_card.json'), 'w') as f:
    f.write(metrics if isinstance(metrics, str) else json.dumps({'metrics': metrics}))


@pytest.mark.parametrize('pushed_map,blessed', [(0.0, True), (0.9999, False)])
def test_not_worse_than_the_pushed_model(tmp_path, model_artifact, pushed_map, blessed):
  registry = str(tmp_path / 'registry')
  _write_card(registry, '100', {'test_accuracy': 1.0, 'map': 1.0})  # Older version.
  _write_card(registry, '200', {'test_accuracy': 0.0, 'map': pushed_map})
  _write_card(registry, '300', '{not json')  # Newest but unreadable: skipped.
  examples = _write_examples(str(tmp_path))
  outputs = _run(str(tmp_path), examples, model_artifact, not_worse_than_pushed=1,
                 registry_dir=registry)
  metrics = embedding_evaluator.read_metrics(outputs['evaluation'].uri)
  check = metrics['blessing']['checks'][-1]
  assert check['name'] == 'not_worse_than_pushed' and check['passed'] is blessed
  assert os.path.join('sknet', '200') in check['detail']
  assert metrics['blessed'] is blessed
  assert outputs['blessing'].get_int_custom_property('blessed') == int(blessed)


def test_nothing_pushed_yet_passes_with_a_reason(tmp_path, model_artifact):
  examples = _write_examples(str(tmp_path))
  outputs = _run(str(tmp_path), examples, model_artifact, not_worse_than_pushed=1,
                 registry_dir=str(tmp_path / 'empty'))
  check = embedding_evaluator.read_metrics(outputs['evaluation'].uri)['blessing']['checks'][-1]
  assert check['passed'] is True and 'no registry folder' in check['detail']
