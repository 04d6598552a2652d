"""Resumable training: a real training process killed with SIGKILL continues from its checkpoint."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests import training_fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 48 training drawings in batches of 8: 6 steps an epoch.
STEPS_PER_EPOCH = 6


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  return training_fixtures.examples_and_transform(str(tmp_path_factory.mktemp('resume')))


def _command(data, work_dir, weights, **config):
  examples, transform = data
  config = dict(config, examples_dir=examples, transform_dir=transform)
  return [sys.executable, '-m', 'tests.training_fixtures', str(work_dir), str(weights),
          json.dumps(config)]


def _environment():
  return dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2',
              PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))


def _checkpointed_step(resume_root) -> int:
  """The step of the newest complete checkpoint under `resume_root` (0 if none)."""
  steps = [0]
  for index in glob.glob(os.path.join(resume_root, '*', 'checkpoint')):
    with open(index) as f:
      for line in f:
        if line.startswith('model_checkpoint_path:'):
          steps.append(int(line.split('"')[1].rsplit('-', 1)[1]))
  return max(steps)


@pytest.mark.slow
def test_a_killed_training_resumes_from_its_checkpoint(data, tmp_path):
  # Every epoch end and every second is a checkpoint; 40 epochs take long enough to kill.
  config = dict(epochs=40, checkpoint_seconds=1.0, precision='float32')
  work_dir = tmp_path / 'execution'
  resume_root = tmp_path / 'resume'
  process = subprocess.Popen(_command(data, work_dir, tmp_path / 'first.npz', **config),
                             cwd=ROOT, env=_environment(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 300
    while _checkpointed_step(resume_root) < 2 * STEPS_PER_EPOCH + 1:
      assert process.poll() is None, 'training ended before it could be killed'
      assert time.time() < deadline, 'no checkpoint within 5 minutes'
      time.sleep(0.2)
  finally:
    process.send_signal(signal.SIGKILL)
    process.wait()
  killed_at = _checkpointed_step(resume_root)
  total = 40 * STEPS_PER_EPOCH
  assert 0 < killed_at < total
  assert not (tmp_path / 'first.npz').exists()

  finished = subprocess.run(_command(data, work_dir, tmp_path / 'second.npz', **config),
                            cwd=ROOT, env=_environment(), capture_output=True, text=True,
                            timeout=900)
  assert finished.returncode == 0, finished.stderr[-3000:]
  with open(work_dir / 'model_run' / 'history.json') as f:
    summary = json.load(f)
  assert summary['resumed_from_step'] >= killed_at
  assert summary['steps'] == total
  # One history row per epoch over both attempts, not only the resumed ones.
  assert len(summary['history']['loss']) == 40
  assert summary['epochs_reached'] == pytest.approx(40)
  # The model was exported, so the checkpoint is gone: a new run would start afresh.
  assert _checkpointed_step(resume_root) == 0
  assert os.path.isdir(work_dir / 'model' / 'Format-Serving' / 'variables')


@pytest.mark.slow
def test_a_time_budget_stops_training_and_reports_the_epochs_reached(data, tmp_path):
  # 0.1 minute of a 1000-epoch run: stopped by the budget, mid-way.
  process = subprocess.run(
      _command(data, tmp_path / 'execution', tmp_path / 'weights.npz', epochs=1000,
               time_budget_minutes=0.1, precision='float32'),
      cwd=ROOT, env=_environment(), capture_output=True, text=True, timeout=600)
  assert process.returncode == 0, process.stderr[-3000:]
  with open(tmp_path / 'execution' / 'model_run' / 'history.json') as f:
    summary = json.load(f)
  assert summary['stopped_by_time_budget'] is True
  assert 0 < summary['steps'] < 1000 * STEPS_PER_EPOCH
  assert summary['training_seconds'] >= 6.0
  assert summary['epochs_reached'] == pytest.approx(summary['images_seen'] / 48, abs=1e-3)
  assert summary['precision'] == 'float32'


def test_every_checkpoint_holds_the_log_of_each_epoch_its_steps_complete(tmp_path):
  # A checkpoint taken on an epoch's last batch, before that epoch's log exists, would make
  # a resume skip the log (the kill in the test above can land there).
  import numpy as np
  import tensorflow as tf
  import tf_keras as keras

  from models import resume

  model = keras.Sequential([keras.layers.Input((2,)), keras.layers.Dense(3)])
  model.compile(optimizer='sgd',
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  state = resume.TrainingState(str(tmp_path / 'checkpoint'), model)
  saved = []
  save = state.save
  state.save = lambda: (saved.append((int(state.global_step.numpy()), len(state.epochs))),
                        save())
  steps_per_epoch = 3
  # save_seconds=0: a time-based checkpoint is due after every batch.
  checkpointing = resume.Checkpointing(state, save_seconds=0.0)
  features = np.zeros((4, 2), np.float32)
  labels = np.zeros((4,), np.int64)

  def batches_from(step):
    return tf.data.Dataset.from_tensors((features, labels)).repeat()

  history = resume.fit(model, batches_from, steps_per_epoch, 2, [], checkpointing)
  assert len(history['loss']) == 2
  assert [step for step, _ in saved] == [1, 2, 3, 4, 5, 6]
  for step, epochs_logged in saved:
    assert epochs_logged == step // steps_per_epoch, (step, epochs_logged)
