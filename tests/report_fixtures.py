"""Helpers of the report tests: reading the Markdown's sections, tables and figure links, a PNG,
and a made-up run whose metrics come from the Evaluator's own compute_metrics."""
import io
import re
import types

import numpy as np

from pipeline import report_data

FIGURE_LINK = re.compile(r'!\[[^\]]*\]\((figures/[^)]+\.png)\)')


def table_row(markdown: str, first_cell: str):
  """The cells of the first table row whose first cell is `first_cell`."""
  for line in markdown.splitlines():
    cells = [c.strip() for c in line.strip().strip('|').split('|')]
    if line.startswith('|') and cells and cells[0] == first_cell:
      return cells
  raise AssertionError(f'no table row starting with {first_cell!r}')


def section(markdown: str, heading: str) -> str:
  """The text under the heading that starts with `heading` ('## 1. Introduction', '### 3.2'),
  up to the next heading of the same or a higher level."""
  level = len(heading) - len(heading.lstrip('#'))
  lines = markdown.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith(heading))
  end = next((i for i in range(start + 1, len(lines))
              if lines[i].startswith('#') and len(lines[i]) - len(lines[i].lstrip('#')) <= level),
             len(lines))
  return '\n'.join(lines[start + 1:end])


def headings(markdown: str, level: int = 2):
  """The headings of one level, in order, without their hashes."""
  prefix = '#' * level + ' '
  return [line[len(prefix):] for line in markdown.splitlines() if line.startswith(prefix)]


def line_of(markdown: str, text: str) -> int:
  return next(i for i, line in enumerate(markdown.splitlines()) if text in line)


def interval(value, ci95, percent):
  """A value and its interval as the report writes them."""
  if percent:
    return f'{value:.1%} [{ci95[0] * 100:.1f}, {ci95[1] * 100:.1f}]'
  return f'{value:.3f} [{ci95[0]:.3f}, {ci95[1]:.3f}]'


def png(rng, size=16):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, size=(size, size)).astype(np.uint8)).save(buffer, 'PNG')
  return buffer.getvalue()


def _node(node_id, start, end, outputs, inputs=None):
  return types.SimpleNamespace(node_id=node_id, state='COMPLETE', outputs=outputs,
                               inputs=inputs or {}, start_time=start, end_time=end,
                               seconds=end - start)


def _evaluated(name, categories, skill, seed, test_per_category=5):
  """A made-up model's ModelResults, its metrics from the Evaluator's own compute_metrics."""
  from components.evaluator import executor as evaluator_executor  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  names = np.array(categories)

  def split(per_category, prefix):
    n = per_category * len(categories)
    true_ids = np.arange(n) % len(categories)
    logits = rng.normal(size=(n, len(categories)))
    # Some categories are easier than others: the sorted figures have something to sort.
    logits[np.arange(n), true_ids] += skill * (1 + true_ids / len(categories))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return {'category': names[true_ids], 'predicted': names[probabilities.argmax(axis=1)],
            'probabilities': probabilities.astype(np.float32),
            'embedding': np.maximum(logits @ rng.normal(size=(len(categories), 16)),
                                    0).astype(np.float32),
            'id': np.array([f'{prefix}{i:05d}' for i in range(n)])}

  test = split(test_per_category, 't')
  metrics, per_query = evaluator_executor.compute_metrics(name, split(2, 'r'), test,
                                                           categories)
  per_query = {'id': test['id'], 'category': test['category'],
               'predicted': test['predicted'], **per_query}
  # A Trainer's history.json (models/trainer.py): a budget of training images, no epoch limit.
  history = {'steps': 4, 'images_seen': 40, 'epochs_reached': 2.0, 'precision': 'float32',
             'training_seconds': 90.0,
             'budget': {'kind': 'images', 'value': 40, 'total_steps': 4},
             'optimizer': 'adam', 'lr_schedule': 'linear', 'peak_learning_rate': 1e-3,
             'warmup_fraction': 0.25, 'label_smoothing': 0.0, 'last_learning_rate': 0.0,
             'history': {'loss': [2.0 + seed, 1.5], 'accuracy': [0.3, 0.5],
                         'learning_rate': [1e-3, 5e-4]}}
  return report_data.ModelResults(name, metrics, history, {'epochs': 0, 'training_images': 40},
                                  per_query, '')


def anatomy(name: str, num_classes: int, image_size: int):
  """The anatomy of a freshly built model of the architecture `name`."""
  from models import model_anatomy  # pylint: disable=g-import-not-at-top
  from models import architectures  # pylint: disable=g-import-not-at-top
  model = architectures.build(name, num_classes, image_size=image_size)
  return model_anatomy.anatomy(model), model.count_params()


# A model card's signatures as the RegistryPusher describes them (describe_signatures).
CARD_SIGNATURES = {'serving_png': {'inputs': {'image_png': 'string (None,)'},
                                   'outputs': ['category', 'embedding', 'probabilities']},
                   'embed': {'inputs': {'examples': 'string (None,)'},
                             'outputs': ['category', 'embedding']}}


def _artifact(artifact_id, uri=''):
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  return metadata_store_pb2.Artifact(id=artifact_id, uri=uri)


def synthetic_run(tmp_path, num_categories, paired=True, first_skill=4.0, second_skill=1.0,
                  architectures=False):
  """Two made-up models on `num_categories`, compared by ModelComparison; sknet pushed as
  version 3 of a registry below the run's output folder; lineage ExampleGen -> Trainer ->
  Evaluator -> ModelComparison; with `architectures`, the anatomy of both real networks."""
  from components.model_comparison import executor as comparison_executor  # pylint: disable=g-import-not-at-top
  categories = [f'category {i:03d}' for i in range(num_categories)]
  models = [_evaluated('sknet', categories, first_skill, 0),
            _evaluated('skresnet', categories, second_skill, 1)]
  comparison = comparison_executor.compare(
      models[0].metrics, models[1].metrics,
      *([m.per_query for m in models] if paired else [None, None]))
  output_dir = tmp_path / 'outputs'
  models[0].pushed_to, models[0].pushed_version = str(output_dir / 'registry/sknet/3'), '3'
  models[0].card = {'version': '3', 'signatures': CARD_SIGNATURES,
                    'gallery': {'size': 5 * num_categories, 'splits': ['test']}}
  if architectures:
    for model in models:
      model.architecture = anatomy(model.name, num_categories, 32)[0]
  examples, trained, evaluation = _artifact(1), _artifact(2), _artifact(3)
  comparison_artifact = _artifact(4, str(output_dir / 'pipeline_root/ModelComparison/4'))
  nodes = {'QuickDrawExampleGen': _node('QuickDrawExampleGen', 0.0, 5.0,
                                        {'examples': [examples], 'manifest': [_artifact(5)]}),
           'Trainer.sknet': _node('Trainer.sknet', 5.0, 30.0, {'model': [trained]},
                                  {'examples': [examples]}),
           'EmbeddingEvaluator.sknet': _node('EmbeddingEvaluator.sknet', 30.0, 40.0,
                                             {'evaluation': [evaluation]},
                                             {'model': [trained], 'examples': [examples]}),
           'ModelComparison': _node('ModelComparison', 40.0, 41.0,
                                    {'comparison': [comparison_artifact]},
                                    {'first_evaluation': [evaluation]})}
  rng = np.random.default_rng(2)
  drawings = {i: (c, png(rng)) for i, c in zip(models[0].per_query['id'],
                                                models[0].per_query['category'])}
  return report_data.RunResults(
      'p', 'r1', str(output_dir / 'metadata/p/metadata.sqlite'), nodes,
      {'num_categories': num_categories, 'train_per_category': 2, 'test_per_category': 5,
       'seed': 1}, {'totals': {'read': 40 * num_categories, 'duplicates_removed': num_categories,
                               'skipped_total': 0, 'train': 2 * num_categories,
                               'test': 5 * num_categories}},
      models, comparison, comparison_executor.to_markdown(comparison), drawings, 32)


def timed_node(node_id, start, end, state='COMPLETE', outputs=None):
  """An execution as results.NodeRun has it, without lineage."""
  return types.SimpleNamespace(node_id=node_id, state=state, outputs=outputs or {},
                               start_time=start, end_time=end, seconds=end - start)


def scored_model(name, test_accuracy, map_, train_accuracy=0.9, map_cosine=None, matrix=None,
                 categories=3, embedding_dim=1024):
  """A model's results with hand-set metrics (3 categories, 48x48 pixels, no history)."""
  metrics = {'train_accuracy': train_accuracy, 'test_accuracy': test_accuracy, 'map': map_,
             'chance_accuracy': 1 / categories, 'num_categories': categories,
             'embedding_dim': embedding_dim, 'train_examples': 30 * categories,
             'test_examples': 10 * categories, 'map_queries': 10 * categories,
             'floors': {'random_map': 0.33, 'raw_pixels_map': 0.4, 'raw_pixels_dim': 48 * 48},
             'thresholds': {'min_test_accuracy': 0.75, 'min_map': 0.2,
                            'not_worse_than_pushed': False},
             'blessing': {'checks': [
                 {'name': 'min_test_accuracy', 'passed': test_accuracy >= 0.75,
                  'value': test_accuracy, 'threshold': 0.75},
                 {'name': 'min_map', 'passed': True, 'value': map_, 'threshold': 0.2}]}}
  if map_cosine is not None:
    metrics['map_cosine'] = map_cosine
  if matrix is not None:
    metrics['classification'] = {'categories': ['a', 'b', 'c'],
                                 'test': {'confusion_matrix': matrix}}
  pushed = f'/registry/{name}/1' if test_accuracy >= 0.75 else ''
  return report_data.ModelResults(name, metrics, {}, {'epochs': 2, 'image_size': 48}, {}, pushed)


def small_run(*models, nodes=None, image_size=48):
  """A run of `models` whose source and store name a folder of someone else's machine."""
  sampling = {'num_categories': 3, 'train_per_category': 100, 'test_per_category': 10,
              'seed': 1, 'source': '/home/someone/data/quickdraw/simplified'}
  manifest = {'categories': {c: {'read': 200, 'train': 100, 'test': 10} for c in 'abc'}}
  return report_data.RunResults('p', 'r1', '/home/someone/out/metadata/p/metadata.sqlite',
                                nodes or {}, sampling, manifest, list(models), {}, '', {},
                                image_size)


def trained_model(name, training, **history):
  """A model with its Trainer's settings (`training`) and history.json's keys."""
  return report_data.ModelResults(name, scored_model(name, 0.5, 0.3).metrics, history, training,
                                  {}, '')
