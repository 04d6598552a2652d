"""Blessing end to end: TFMA's validation, the ML Metadata baseline and the Pusher, in real runs.

Three runs of the smoke pipeline (skNet only, trained for 10 epochs) share one ML Metadata
store; a blessed model may be at most 0.05 below its baseline (accuracy and mAP):
  first   no blessed model yet: the change thresholds are rubber-stamped; blessed, pushed;
  second  the same model (Trainer cached) under an mAP threshold it cannot reach: the
          baseline is the first run's model, the value check fails, nothing is pushed;
  third   an untrained model (learning rate 0: its weights stay at initialisation) against
          the first run's blessed model: the change thresholds fail, nothing is pushed.
"""
import dataclasses
import os

import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma

from components.evaluator import outputs as evaluation_outputs
from pipeline import config as config_lib
from pipeline import results
from pipeline import run as run_lib
from tests.conftest import SMOKE_MIN_MAP

pytestmark = pytest.mark.e2e

MODEL = 'sknet'
MAX_DROP = 0.05


@pytest.fixture(scope='module')
def runs(tmp_path_factory, quickdraw_source):
  smoke = config_lib.profile('smoke')
  config = smoke.replace(
      source=quickdraw_source, models=(MODEL,), min_map=SMOKE_MIN_MAP,
      max_accuracy_drop=MAX_DROP, max_map_drop=MAX_DROP,
      output_dir=str(tmp_path_factory.mktemp('blessing')),
      training={**smoke.training, MODEL: dataclasses.replace(smoke.training[MODEL], epochs=10)})
  unreachable = config.replace(min_map=0.99)
  worse = config.replace(min_map=0.0, training={
      **config.training,
      MODEL: dataclasses.replace(config.training[MODEL], epochs=1, learning_rate=0.0)})
  ids = [run_lib.run(c) for c in (config, unreachable, worse)]
  store = results.open_store(config.metadata_path)
  return config, [results.node_runs(store, config.pipeline_name, i) for i in ids]


def _single(nodes, node_id, key):
  artifacts = nodes[node_id].outputs[key]
  assert len(artifacts) == 1, (node_id, key)
  return artifacts[0]


def _evaluated(nodes):
  evaluation = _single(nodes, f'EmbeddingEvaluator.{MODEL}', 'evaluation')
  blessing = _single(nodes, f'EmbeddingEvaluator.{MODEL}', 'blessing')
  return evaluation_outputs.read_metrics(evaluation.uri), blessing, evaluation.uri


def _pushed(nodes) -> bool:
  pushed = _single(nodes, f'Pusher.{MODEL}', 'pushed_model')
  return bool(pushed.custom_properties['pushed'].int_value)


def _versions(config):
  return sorted(tf.io.gfile.listdir(os.path.join(config.registry_dir, MODEL)))


def test_first_blessing_is_rubber_stamped_and_pushed(runs):
  config, (first, _, _) = runs
  metrics, blessing, uri = _evaluated(first)
  assert first[f'BaselineResolver.{MODEL}'].state == 'COMPLETE'
  assert metrics['blessed'] and metrics['blessing']['rubber_stamp']
  assert metrics['baseline_model'] is None
  assert blessing.custom_properties['blessed'].int_value == 1
  assert tfma.load_validation_result(uri).validation_ok
  assert _pushed(first)


def test_unreachable_threshold_is_not_blessed_and_not_pushed(runs):
  config, (first, second, _) = runs
  metrics, blessing, uri = _evaluated(second)
  first_model = _single(first, f'Trainer.{MODEL}', 'model')
  # The Trainer was cached: the candidate is the first run's model, and so is the baseline
  # ML Metadata resolved (the newest model this Evaluator blessed).
  assert _single(second, f'Trainer.{MODEL}', 'model').id == first_model.id
  assert metrics['baseline_model'] == first_model.uri
  assert blessing.custom_properties['baseline_model_id'].int_value == first_model.id
  checks = {c['name']: c for c in metrics['blessing']['checks']}
  assert not checks['min_map']['passed'] and checks['min_map']['threshold'] == 0.99
  assert checks['map_vs_baseline']['passed'] and checks['map_vs_baseline']['value'] == 0.0
  assert not metrics['blessed'] and not tfma.load_validation_result(uri).validation_ok
  assert blessing.custom_properties['blessed'].int_value == 0
  assert os.listdir(blessing.uri) == ['NOT_BLESSED']
  assert not _pushed(second)


def test_model_worse_than_the_baseline_is_not_blessed_and_not_pushed(runs):
  config, (first, _, third) = runs
  first_metrics, _, _ = _evaluated(first)
  metrics, blessing, _ = _evaluated(third)
  first_model = _single(first, f'Trainer.{MODEL}', 'model')
  assert _single(third, f'Trainer.{MODEL}', 'model').id != first_model.id
  assert metrics['baseline_model'] == first_model.uri
  # The baseline is measured again by TFMA on the same test split: its values are the first
  # run's.
  assert metrics['baseline']['map'] == pytest.approx(first_metrics['map'], abs=1e-9)
  checks = {c['name']: c for c in metrics['blessing']['checks']}
  assert checks['min_test_accuracy']['passed'] and checks['min_map']['passed']
  # Ten epochs of training beat the initial weights by more than the allowed drop.
  assert metrics['test_accuracy'] < first_metrics['test_accuracy'] - MAX_DROP
  assert not checks['test_accuracy_vs_baseline']['passed']
  assert checks['test_accuracy_vs_baseline']['value'] == pytest.approx(
      metrics['test_accuracy'] - first_metrics['test_accuracy'], abs=1e-6)
  assert checks['test_accuracy_vs_baseline']['threshold'] == -MAX_DROP
  map_drop = first_metrics['map'] - metrics['map']
  assert checks['map_vs_baseline']['passed'] is (map_drop <= MAX_DROP)
  assert not metrics['blessed']
  assert blessing.custom_properties['baseline_model_id'].int_value == first_model.id
  assert not _pushed(third)
  assert len(_versions(config)) == 1  # Only the first run's model was ever pushed.
