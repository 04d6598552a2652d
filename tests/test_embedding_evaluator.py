"""The EmbeddingEvaluator's executor on real examples and a small real SavedModel.

The model honours the Trainer's export contract (an `embed` signature: serialized tf.Examples
-> embedding, probabilities, category; a `transform_features` signature giving the label id;
assets.extra/categories.txt) with a fixed, readable rule instead of a trained CNN: the
embedding is the image, the class its best template. A worse variant predicts the next
category and embeds only two pixels; the evaluations are TFMA's, run on the Beam runner.
"""
import io
import json
import os

import numpy as np
from PIL import Image
import pytest
from sklearn.metrics import average_precision_score
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tfx.types import standard_artifacts

from components.evaluator import component as evaluator_component
from components.evaluator import confidence
from components.evaluator import outputs as evaluation_outputs
from domain import retrieval

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

  def __init__(self, worse: bool = False):
    super().__init__()
    templates = np.zeros((len(CATEGORIES), SIZE * SIZE), np.float32)
    for c in range(len(CATEGORIES)):
      mask = np.zeros((SIZE, SIZE), np.float32)
      mask[2 * c:2 * c + 3, 2 * c:2 * c + 3] = 1
      templates[c] = mask.reshape(-1)
    self.worse = worse
    self.templates = tf.constant(np.roll(templates, 1, axis=0) if worse else templates)
    self.categories = tf.constant(CATEGORIES)
    self.label_ids = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(CATEGORIES), tf.range(len(CATEGORIES), dtype=tf.int64)), default_value=-1)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def transform_features(self, examples):
    category = tf.io.parse_example(examples, {'category': tf.io.FixedLenFeature([], tf.string)})
    return {'label': self.label_ids.lookup(category['category'])}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def embed(self, examples):
    png = tf.io.parse_example(examples, {'image_png': tf.io.FixedLenFeature([], tf.string)})
    images = tf.map_fn(lambda p: tf.cast(tf.io.decode_png(p, channels=1), tf.float32),
                       png['image_png'], fn_output_signature=tf.TensorSpec([SIZE, SIZE, 1]))
    image = tf.reshape(images, [-1, SIZE * SIZE]) / 255.0
    probabilities = tf.nn.softmax(4.0 * tf.matmul(image, self.templates, transpose_b=True))
    class_id = tf.argmax(probabilities, axis=-1)
    embedding = image[:, :2] if self.worse else image
    return {'embedding': embedding, 'probabilities': probabilities,
            'category': tf.gather(self.categories, class_id)}


def _save_model(root, model_id, worse=False):
  model = standard_artifacts.Model()
  model.uri = str(root)
  model.id = model_id
  serving_dir = os.path.join(model.uri, 'Format-Serving')
  module = _TemplateModel(worse)
  tf.saved_model.save(module, serving_dir, signatures={
      'embed': module.embed, 'transform_features': module.transform_features})
  os.makedirs(os.path.join(serving_dir, 'assets.extra'))
  with open(os.path.join(serving_dir, 'assets.extra', 'categories.txt'), 'w') as f:
    f.write('\n'.join(CATEGORIES) + '\n')
  return model


@pytest.fixture(scope='module')
def model_artifact(tmp_path_factory):
  return _save_model(tmp_path_factory.mktemp('model'), 7)


@pytest.fixture(scope='module')
def worse_model(tmp_path_factory):
  return _save_model(tmp_path_factory.mktemp('worse_model'), 8, worse=True)


def _run(root, examples, model, baseline=None, **parameters):
  outputs = evaluator_component.output_artifacts(root)
  executor = evaluator_component.EmbeddingEvaluator.EXECUTOR_SPEC.executor_class()
  inputs = {'examples': [examples], 'model': [model]}
  if baseline is not None:
    inputs['baseline_model'] = [baseline]
  executor.Do(inputs, outputs,
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
  data = evaluation_outputs.load_per_query(evaluated['embeddings'].uri)
  n_test = len(CATEGORIES) * TEST_PER_CATEGORY + 1
  assert metrics['schema_version'] == 4
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
  for key in evaluation_outputs.INTERVALS:
    interval = metrics[key]
    assert interval[0] <= metrics[key[:-len('_ci95')]] <= interval[1], key
  for key in evaluation_outputs.HEADLINE_METRICS + evaluation_outputs.EXTRA_PROPERTIES:
    for artifact in (evaluated['evaluation'], evaluated['blessing']):
      assert artifact.get_float_custom_property(key) == pytest.approx(metrics[key]), key


def test_per_query_arrays(evaluated):
  data = evaluation_outputs.load_per_query(evaluated['embeddings'].uri)
  embeddings, categories, ids = evaluation_outputs.load_embeddings(evaluated['embeddings'].uri)
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
  metrics = evaluation_outputs.read_metrics(evaluated['evaluation'].uri)
  assert metrics['blessed'] is True
  assert [c['name'] for c in metrics['blessing']['checks']] == ['min_test_accuracy', 'min_map']
  assert evaluated['blessing'].get_int_custom_property('blessed') == 1
  assert os.listdir(evaluated['blessing'].uri) == ['BLESSED']


def test_not_blessed_below_a_threshold(tmp_path, model_artifact):
  examples = _write_examples(str(tmp_path))
  outputs = _run(str(tmp_path), examples, model_artifact, min_test_accuracy=0.5, min_map=0.999)
  metrics = evaluation_outputs.read_metrics(outputs['evaluation'].uri)
  assert metrics['blessed'] is False
  assert [c['passed'] for c in metrics['blessing']['checks']] == [True, False]
  assert outputs['blessing'].get_int_custom_property('blessed') == 0
  assert os.listdir(outputs['blessing'].uri) == ['NOT_BLESSED']


def test_tfma_reads_the_evaluation_and_agrees_with_metrics_json(evaluated):
  uri = evaluated['evaluation'].uri
  metrics = evaluation_outputs.read_metrics(uri)
  (slice_key, values), = tfma.load_eval_result(uri).slicing_metrics
  assert slice_key == ()
  assert values['probabilities']['']['accuracy']['doubleValue'] == metrics['test_accuracy']
  assert values['probabilities']['']['top5_accuracy']['doubleValue'] == (
      metrics['test_top5_accuracy'])
  assert values['embedding']['']['retrieval_map']['doubleValue'] == metrics['map']
  assert tfma.load_validation_result(uri).validation_ok
  (_, train), = tfma.load_eval_result(os.path.join(uri, 'train')).slicing_metrics
  assert train['probabilities']['']['accuracy']['doubleValue'] == metrics['train_accuracy']
  # The confusion matrix is TFMA's plot, in the model's category order.
  matrix = np.array(metrics['classification']['test']['confusion_matrix'])
  data = evaluation_outputs.load_per_query(evaluated['embeddings'].uri)
  for i, category in enumerate(CATEGORIES):
    for j, predicted in enumerate(CATEGORIES):
      assert matrix[i, j] == np.sum((data['category'] == category) &
                                    (data['predicted'] == predicted))


def test_worse_than_the_baseline_is_not_blessed(tmp_path, model_artifact, worse_model):
  examples = _write_examples(str(tmp_path))
  outputs = _run(str(tmp_path), examples, worse_model, baseline=model_artifact,
                 max_accuracy_drop=0.1, max_map_drop=0.1)
  metrics = evaluation_outputs.read_metrics(outputs['evaluation'].uri)
  checks = {c['name']: c for c in metrics['blessing']['checks']}
  # The worse model still clears the value thresholds (0): only the baseline rejects it.
  assert checks['min_test_accuracy']['passed'] and checks['min_map']['passed']
  assert not checks['test_accuracy_vs_baseline']['passed']
  assert not checks['map_vs_baseline']['passed']
  assert checks['test_accuracy_vs_baseline']['value'] == pytest.approx(
      metrics['test_accuracy'] - metrics['baseline']['test_accuracy'], abs=1e-6)
  assert checks['test_accuracy_vs_baseline']['value'] < -0.1
  assert metrics['blessed'] is False and metrics['baseline_model'] == model_artifact.uri
  assert outputs['blessing'].get_int_custom_property('blessed') == 0
  assert outputs['blessing'].get_int_custom_property('baseline_model_id') == model_artifact.id
  assert os.listdir(outputs['blessing'].uri) == ['NOT_BLESSED']


def test_as_good_as_the_baseline_is_blessed(tmp_path, model_artifact):
  examples = _write_examples(str(tmp_path))
  outputs = _run(str(tmp_path), examples, model_artifact, baseline=model_artifact,
                 max_accuracy_drop=0.0, max_map_drop=0.0)
  metrics = evaluation_outputs.read_metrics(outputs['evaluation'].uri)
  checks = {c['name']: c for c in metrics['blessing']['checks']}
  assert checks['map_vs_baseline']['value'] == 0.0 and checks['map_vs_baseline']['passed']
  assert metrics['blessed'] is True and metrics['blessing']['rubber_stamp'] is False


def test_change_thresholds_are_rubber_stamped_without_a_baseline(tmp_path, worse_model):
  examples = _write_examples(str(tmp_path))
  outputs = _run(str(tmp_path), examples, worse_model, max_accuracy_drop=0.0, max_map_drop=0.0)
  metrics = evaluation_outputs.read_metrics(outputs['evaluation'].uri)
  assert metrics['blessed'] is True and metrics['blessing']['rubber_stamp'] is True
  assert metrics['baseline'] is None and metrics['baseline_model'] is None
  assert [c['name'] for c in metrics['blessing']['checks'] if c['kind'] == 'change'] == [
      'test_accuracy_vs_baseline', 'map_vs_baseline']


def test_a_model_without_the_label_signature_is_refused(tmp_path):
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / 'old_model')
  module = _TemplateModel()
  tf.saved_model.save(module, os.path.join(model.uri, 'Format-Serving'),
                      signatures={'embed': module.embed})
  examples = _write_examples(str(tmp_path))
  with pytest.raises(ValueError, match='transform_features.*Re-run the Trainer'):
    _run(str(tmp_path), examples, model)


@pytest.mark.parametrize('limit', [1, 7, 40, 60])
def test_the_train_sample_is_the_records_with_the_smallest_hashes(limit):
  import hashlib  # pylint: disable=import-outside-toplevel
  import apache_beam as beam  # pylint: disable=import-outside-toplevel
  from apache_beam.testing import util as beam_testing  # pylint: disable=import-outside-toplevel
  from components.evaluator import tfma_evaluation  # pylint: disable=import-outside-toplevel

  records = [f'drawing {index}'.encode() for index in range(40)]
  expected = sorted(records, key=lambda record: hashlib.sha256(record).digest())[:limit]
  with beam.Pipeline() as pipeline:
    sample = (pipeline
              | beam.Create(records, reshuffle=True)
              | tfma_evaluation._hash_sample(limit))  # pylint: disable=protected-access
    beam_testing.assert_that(sample, beam_testing.equal_to(expected))
