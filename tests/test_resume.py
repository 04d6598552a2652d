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
  config = dict(epochs=40, checkpoint_seconds=1.0, precision='float32', lr_schedule='linear',
                learning_rate=1e-3)
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
  # The training curve (a point every step at 6 steps an epoch) over both attempts, each step
  # once: the points after the last checkpoint were redone, not repeated.
  assert summary['curve']['step'] == list(range(1, total + 1))
  assert summary['curve']['images'] == [8 * step for step in range(1, total + 1)]
  # The resumed attempt continued the same schedule: at the end of epoch e of 40 the linear
  # rate is 1e-3 x (1 - e/40), in both attempts, and zero at the end of the budget.
  expected = [1e-3 * (1 - epoch / 40) for epoch in range(1, 41)]
  assert summary['history']['learning_rate'] == pytest.approx(expected, abs=1e-9)
  assert summary['last_learning_rate'] == pytest.approx(0.0, abs=1e-9)
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

  history = resume.fit(model, batches_from, steps_per_epoch, 2 * steps_per_epoch, [],
                       checkpointing)
  assert len(history['loss']) == 2
  assert [step for step, _ in saved] == [1, 2, 3, 4, 5, 6]
  for step, epochs_logged in saved:
    assert epochs_logged == step // steps_per_epoch, (step, epochs_logged)


def _checkpointing_at(tmp_path, seconds_trained, budget_seconds, clock, schedule_steps):
  import tf_keras as keras

  from models import resume

  model = keras.Sequential([keras.layers.Input((2,)), keras.layers.Dense(3)])
  model.compile(optimizer='sgd', loss='mse')
  state = resume.TrainingState(str(tmp_path / 'checkpoint'), model)
  state.training_seconds.assign(seconds_trained)
  return resume.Checkpointing(state, save_seconds=1e9, budget_seconds=budget_seconds,
                              clock=clock, schedule_steps=schedule_steps)


def test_a_resumed_time_budget_continues_the_schedule_where_the_killed_attempt_was(
    tmp_path, monkeypatch):
  import tensorflow as tf

  from models import resume
  from models import schedules

  now = [1000.0]
  monkeypatch.setattr(resume.time, 'monotonic', lambda: now[0])
  clock = tf.Variable(0.0)
  rate = schedules.learning_rate('linear', 1e-3, total_steps=200, clock=clock)
  # The killed attempt had spent 30 of the 60 budgeted seconds: the resumed one starts at
  # half the curve whatever its step count, and moves with its own seconds.
  checkpointing = _checkpointing_at(tmp_path, 30.0, 60.0, clock, 200)
  checkpointing.on_train_begin()
  checkpointing.on_train_batch_begin(0)
  assert float(clock.numpy()) == pytest.approx(100.0)
  assert float(rate(0)) == pytest.approx(5e-4)
  now[0] += 15.0
  checkpointing.on_train_batch_begin(1)
  assert float(rate(1)) == pytest.approx(2.5e-4)
  now[0] += 20.0  # Past the budget: held at the end of the curve, and training stops.
  checkpointing.on_train_batch_begin(2)
  assert float(rate(2)) == 0.0
  checkpointing.model = type('Model', (), {'stop_training': False})()
  checkpointing.on_train_batch_end(2)
  assert checkpointing.stopped_by_budget and checkpointing.model.stop_training


@pytest.mark.parametrize('start, total, expected', [
    (0, 12, [(0, 4, 3, 0)]),                            # four whole epochs in one call
    (0, 10, [(0, 3, 3, 0), (3, 1, 1, 9)]),              # a budget ending inside epoch 4
    (4, 12, [(1, 1, 2, 4), (2, 2, 3, 6)]),              # the rest of a killed epoch first
    (4, 5, [(1, 1, 1, 4)]),                             # killed and ending in one epoch
    (12, 12, []),
])
def test_fit_segments_cover_every_step_once(start, total, expected):
  from models import resume
  segments = resume.fit_segments(start, 3, total)
  assert segments == expected
  assert sum(epochs * steps for _, epochs, steps, _ in segments) == total - start
