"""The report's data: one pipeline run, gathered from ML Metadata and its artifacts.

`gather` reads what the run recorded (the Evaluators' TFMA evaluations and metrics.json, their
per-query results, the Trainers' settings, histories and exported models, the Pushers' model
cards, the ExampleGen's manifest and test drawings, ModelComparison, the executions' times and
their lineage) into a `RunResults`, a plain structure the tables, figures and templates read;
nothing here computes a metric.
"""
from __future__ import annotations  # Annotations name `results`, imported only when needed.

import dataclasses
import json
import logging
import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np

from components.evaluator import confidence
from models import architectures
from models import training_outputs

if TYPE_CHECKING:
  from pipeline import results  # TFX and ML Metadata: imported at run time only when needed.

# The image side the models saw when a Trainer recorded none (runs made before it did).
DEFAULT_IMAGE_SIZE = 128


@dataclasses.dataclass
class ModelResults:
  """What one model's Trainer, Evaluator and Pusher recorded."""
  name: str
  metrics: Dict[str, Any]  # The Evaluator's metrics.json.
  history: Dict[str, Any]  # The Trainer's history.json ({} when absent).
  training: Dict[str, Any]  # The Trainer's custom_config: the model's training settings.
  per_query: Dict[str, np.ndarray]  # The Evaluator's per-query arrays of the test split.
  pushed_to: str  # '' when not pushed.
  # The exported model's layers and totals (models/model_anatomy.py; {} when unreadable).
  architecture: Dict[str, Any] = dataclasses.field(default_factory=dict)
  pushed_version: str = ''
  card: Dict[str, Any] = dataclasses.field(default_factory=dict)  # The pushed model's card.

  @property
  def title(self) -> str:
    """The model's name as the report writes it ('skNet'); `name` is its identifier ('sknet'),
    for the node ids, figure files and lookups."""
    return architectures.title(self.name)


@dataclasses.dataclass
class RunResults:
  """Everything the report shows about one run."""
  pipeline_name: str
  run_id: str
  metadata_path: str
  nodes: Dict[str, results.NodeRun]
  sampling: Dict[str, Any]  # Source, seed and sizes: the manifest's header.
  manifest: Dict[str, Any]
  models: List[ModelResults]
  comparison: Dict[str, Any]  # ModelComparison's comparison.json ({} when absent).
  comparison_md: str
  test_drawings: Dict[str, Tuple[str, bytes]]  # drawing id -> (category, PNG)
  image_size: int

  @property
  def output_dir(self) -> str:
    """The run's output folder: the store is <output_dir>/metadata/<pipeline>/metadata.sqlite."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(self.metadata_path))))


def gather(metadata_path: str, pipeline_name: str, run_id: Optional[str] = None) -> RunResults:
  """The run `run_id` (default: the latest) of `pipeline_name`, read from its artifacts."""
  from pipeline import results  # pylint: disable=g-import-not-at-top  (TFX: not for --help)
  store = results.open_store(metadata_path)
  if run_id is None:
    ids = results.run_ids(store, pipeline_name)
    if not ids:
      raise LookupError(f'{metadata_path}: no run of pipeline {pipeline_name!r}; run it first')
    run_id = ids[-1]
  nodes = results.node_runs(store, pipeline_name, run_id)
  example_gen = nodes.get('QuickDrawExampleGen')
  if example_gen is None or not example_gen.outputs.get('examples'):
    raise LookupError(f'run {run_id}: no examples recorded (did the run fail early?)')
  examples = example_gen.outputs['examples'][0]
  manifest = _manifest(examples)
  models = [_model_results(nodes, node_id.split('.', 1)[1])
            for node_id in sorted(n for n in nodes if n.startswith('EmbeddingEvaluator.'))]
  if not models:
    raise LookupError(f'run {run_id}: no EmbeddingEvaluator output (did the run fail early?)')
  comparison, comparison_md = _comparison(nodes, models)
  image_size = int(models[0].training.get('image_size', DEFAULT_IMAGE_SIZE))
  return RunResults(pipeline_name, run_id, metadata_path, nodes, sampling(manifest), manifest,
                    models, comparison, comparison_md, _test_drawings(examples.uri), image_size)


def get_path(tree: Any, dotted: str, default=None):
  """The value at a dotted path into nested dicts ('floors.random_map'), or `default`."""
  for part in dotted.split('.'):
    if not isinstance(tree, dict) or part not in tree:
      return default
    tree = tree[part]
  return tree


def sampling(manifest: Dict[str, Any]) -> Dict[str, Any]:
  """Source, seed and sizes of the sample, from the manifest's header."""
  header = {k: v for k, v in manifest.items() if not isinstance(v, (list, dict))}
  if manifest.get('categories'):
    header['num_categories'] = len(manifest['categories'])
  return header


def _model_results(nodes: Dict[str, results.NodeRun], name: str) -> ModelResults:
  from components.evaluator import outputs as evaluation_outputs  # pylint: disable=g-import-not-at-top
  evaluator = nodes[f'EmbeddingEvaluator.{name}']
  evaluation_uri = evaluator.outputs['evaluation'][0].uri
  metrics = _with_tfma_values(evaluation_uri,
                              evaluation_outputs.read_metrics(evaluation_uri))
  per_query = evaluation_outputs.load_per_query(evaluator.outputs['embeddings'][0].uri)
  trainer = nodes.get(f'Trainer.{name}')
  history, training = {}, {}
  if trainer is not None:
    training = _json_property(trainer, 'custom_config')
    if trainer.outputs.get('model_run'):
      text = _read_text(os.path.join(trainer.outputs['model_run'][0].uri,
                                     training_outputs.HISTORY_FILE))
      history = json.loads(text) if text else {}
  pushed_to, pushed_version, card = '', '', {}
  pusher = nodes.get(f'Pusher.{name}')
  if pusher is not None and pusher.outputs.get('pushed_model'):
    pushed = pusher.outputs['pushed_model'][0]
    props = pushed.custom_properties
    if 'pushed' in props and props['pushed'].int_value:
      pushed_to = props['pushed_destination'].string_value
      pushed_version = props['pushed_version'].string_value if 'pushed_version' in props else ''
      from domain import registry_store  # pylint: disable=g-import-not-at-top
      text = _read_text(os.path.join(pushed.uri, registry_store.MODEL_CARD_FILE))
      card = json.loads(text) if text else {}
  return ModelResults(name, metrics, history, training, per_query, pushed_to,
                      _architecture(trainer), pushed_version, card)


def _architecture(trainer: Optional[results.NodeRun]) -> Dict[str, Any]:
  """The anatomy of the Trainer's exported model, loaded back into Keras ({} without one)."""
  if trainer is None or not trainer.outputs.get('model'):
    return {}
  from models import model_anatomy  # pylint: disable=g-import-not-at-top
  from tfx.utils import path_utils  # pylint: disable=g-import-not-at-top
  serving_dir = path_utils.serving_model_path(trainer.outputs['model'][0].uri)
  try:
    return model_anatomy.anatomy(model_anatomy.load_exported(serving_dir))
  except (OSError, ValueError, AttributeError, ImportError) as e:  # Gone, or not Keras.
    logging.warning('report: no architecture table for %s: %s', trainer.node_id, e)
    return {}


def _with_tfma_values(uri: str, metrics: Dict[str, Any]) -> Dict[str, Any]:
  """metrics.json with the classification figures as TFMA's own loaders read them from the
  evaluation (accuracies and the confusion matrix); evaluations before TFMA (schema < 4) as
  they are."""
  if metrics.get('schema_version', 0) < 4:
    return metrics
  from components.evaluator import tfma_evaluation  # pylint: disable=g-import-not-at-top  (TFMA)
  from components.evaluator import tfma_results  # pylint: disable=g-import-not-at-top
  view = tfma_results.read(uri, metrics['classification']['categories'],
                           tfma_evaluation.Thresholds(**metrics['thresholds']))
  metrics = json.loads(json.dumps(metrics))  # A copy: the file's values stay as read.
  for split in ('train', 'test'):
    if view[split] is not None:
      metrics[f'{split}_accuracy'] = view[split]['top1']
      metrics[f'{split}_top5_accuracy'] = view[split]['top5']
  metrics['classification']['test']['confusion_matrix'] = view['test']['confusion_matrix']
  metrics['map'] = view['map']
  return metrics


def _comparison(nodes: Dict[str, results.NodeRun],
                models: List[ModelResults]) -> Tuple[Dict[str, Any], str]:
  """ModelComparison's comparison and its Markdown; the paired intervals of the first two
  models from their per-query arrays when the comparison has none."""
  comparison, comparison_md = {}, ''
  node = nodes.get('ModelComparison')
  if node and node.outputs.get('comparison'):
    from components.model_comparison import executor as comparison_executor  # pylint: disable=g-import-not-at-top
    uri = node.outputs['comparison'][0].uri
    comparison = comparison_executor.read_comparison(uri)
    # Written again from the JSON, so a past run's report shows today's sign convention.
    comparison_md = comparison_executor.to_markdown(comparison)
  if len(models) >= 2 and not comparison.get('paired_difference'):
    # A run whose ModelComparison was not given the per-drawing outcomes: the same paired
    # intervals from the Evaluators' own per-query arrays.
    comparison = dict(comparison, models=comparison.get('models') or [m.name for m in models[:2]])
    by_name = {model.name: model for model in models}
    first, second = comparison['models'][:2]
    comparison['paired_difference'] = confidence.paired_difference_intervals(
        by_name[first].per_query, by_name[second].per_query)
  return comparison, comparison_md


def _manifest(examples) -> Dict[str, Any]:
  from components.example_gen import outputs as example_gen_outputs  # pylint: disable=g-import-not-at-top
  try:
    return example_gen_outputs.read_manifest(examples)
  except FileNotFoundError:  # A run made before the ExampleGen wrote manifests.
    return {}


def _json_property(node: results.NodeRun, key: str) -> Dict[str, Any]:
  text = node.properties.get(key, '')
  try:
    value = json.loads(text) if text else {}
  except ValueError:
    return {}
  return value if isinstance(value, dict) else {}


def _read_text(path: str) -> str:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not tf.io.gfile.exists(path):
    return ''
  with tf.io.gfile.GFile(path) as f:
    return f.read()


def _test_drawings(examples_uri: str) -> Dict[str, Tuple[str, bytes]]:
  """drawing id -> (category, PNG bytes) of the test split."""
  from components.example_gen import outputs as example_gen_outputs  # pylint: disable=g-import-not-at-top
  split = example_gen_outputs.read_split(examples_uri, 'test')
  return dict(zip(split['id'], zip(split['category'], split['png'])))
