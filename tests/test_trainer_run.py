"""run_fn end to end on tiny data: the exported signatures as a bare-TensorFlow client sees
them, validation split and best epoch, warm start, and two-worker distributed training."""
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from domain import drawing_rendering
from models import trainer
from tests import training_fixtures
from tests.conftest import ROOT, synthetic_drawing

VENV_BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  return training_fixtures.examples_and_transform(str(tmp_path_factory.mktemp('tiny')))


@pytest.fixture(scope='module')
def trained(data, tmp_path_factory):
  examples, transform = data
  work = str(tmp_path_factory.mktemp('trained'))
  args = training_fixtures.fn_args(examples, transform, work, epochs=2, validation_percent=25,
                                   augment=True, augment_stroke_jitter=0.5,
                                   lr_schedule='cosine', warmup_fraction=0.25, optimizer='adamw',
                                   weight_decay=1e-4, label_smoothing=0.1)
  trainer.run_fn(args)
  return args


def _png(category_index: int, seed: int = 7) -> bytes:
  import random  # pylint: disable=import-outside-toplevel
  return drawing_rendering.render_png(synthetic_drawing(category_index, random.Random(seed)))


_CLIENT = textwrap.dedent('''
    import importlib.abc, json, sys
    # The pipeline's libraries and the project's packages may not even be looked up.
    BLOCKED = ('tfx', 'tfx_bsl', 'tensorflow_transform', 'apache_beam', 'models',
               'components', 'pipeline', 'tests')

    class Block(importlib.abc.MetaPathFinder):
      def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
          raise ImportError(f'the client must not need {name}')

    sys.meta_path.insert(0, Block())
    import tensorflow as tf
    model_dir, png_file = sys.argv[1], sys.argv[2]
    loaded = tf.saved_model.load(model_dir)
    png = open(png_file, 'rb').read()
    example = tf.train.Example(features=tf.train.Features(feature={
        'image_png': tf.train.Feature(bytes_list=tf.train.BytesList(value=[png]))}))
    classified = loaded.signatures['serving_default'](
        examples=tf.constant([example.SerializeToString()]))
    embedded = loaded.signatures['embed'](examples=tf.constant([example.SerializeToString()]))
    from_png = loaded.signatures['serving_png'](image_png=tf.constant([png]))
    out = {name: {key: value.numpy().tolist() for key, value in outputs.items()}
           for name, outputs in (('serving_default', classified), ('embed', embedded),
                                 ('serving_png', from_png))}
    # Nor did loading need the legacy Keras the model was trained with.
    out['tf_keras_modules'] = sorted(m for m in sys.modules if m.split('.')[0] == 'tf_keras')
    json.dump(out, sys.stdout, default=lambda b: b.decode())
''')


def test_a_bare_tensorflow_client_classifies_and_embeds_a_png(trained, tmp_path):
  png_file = tmp_path / 'box.png'
  png_file.write_bytes(_png(1))
  env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'TF_USE_LEGACY_KERAS')}
  result = subprocess.run(
      [sys.executable, '-I', '-c', _CLIENT, trained.serving_model_dir, str(png_file)],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  assert out['tf_keras_modules'] == []
  categories = sorted(training_fixtures.CATEGORIES)  # The vocabulary, by frequency then name.
  classified, embedded, from_png = out['serving_default'], out['embed'], out['serving_png']
  assert set(classified) == {'probabilities', 'class_id', 'category', 'top5_class_ids',
                             'top5_categories', 'top5_probabilities'}
  probabilities = np.array(classified['probabilities'][0])
  assert probabilities.shape == (3,) and probabilities.sum() == pytest.approx(1.0, abs=1e-5)
  # Top-k: all three classes (fewer than 5), best first, names matching ids.
  ranked = list(np.argsort(-probabilities))
  assert classified['top5_class_ids'][0] == ranked
  assert classified['class_id'][0] == ranked[0]
  assert np.allclose(classified['top5_probabilities'][0], probabilities[ranked], atol=1e-6)
  with open(os.path.join(trained.serving_model_dir, 'assets.extra', 'categories.txt')) as f:
    names = f.read().split('\n')[:-1]
  assert sorted(names) == categories
  assert classified['top5_categories'][0] == [names[i] for i in ranked]
  assert classified['category'][0] == names[ranked[0]]
  assert np.array(embedded['embedding']).shape == (1, 1024)
  # The PNG path and the tf.Example path are the same computation.
  assert np.allclose(from_png['embedding'], embedded['embedding'], atol=1e-5)
  assert np.allclose(from_png['probabilities'], classified['probabilities'], atol=1e-6)


def test_saved_model_cli_lists_the_signatures(trained):
  result = subprocess.run(
      [os.path.join(VENV_BIN, 'saved_model_cli'), 'show', '--dir', trained.serving_model_dir,
       '--all'], capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  for signature in ("signature_def['serving_default']", "signature_def['embed']",
                    "signature_def['serving_png']"):
    assert signature in result.stdout
  for key in ('top5_class_ids', 'top5_categories', 'embedding', 'image_png', 'examples'):
    assert f"['{key}']" in result.stdout, key


def test_validation_split_is_carved_from_training_and_drives_the_best_epoch(trained):
  with open(os.path.join(trained.model_run_dir, trainer.HISTORY_FILE)) as f:
    history = json.load(f)
  # 48 training drawings; the validation share is fixed by a hash of drawing_id.
  held_out = sum(
      int(tf.strings.to_hash_bucket_fast(f'{category}-{number}', 100)) < 25
      for category in training_fixtures.CATEGORIES for number in range(16))
  assert history['validation_examples'] == held_out > 0
  assert history['training_examples'] == 48 - held_out
  losses = history['history']['val_loss']
  assert len(losses) == 2
  assert history['best_epoch'] == int(np.argmin(losses)) + 1
  # TensorBoard curves in the model run folder.
  assert tf.io.gfile.glob(os.path.join(trained.model_run_dir, 'train', 'events.out.tfevents.*'))
  assert tf.io.gfile.glob(os.path.join(trained.model_run_dir, 'validation',
                                       'events.out.tfevents.*'))


def test_warm_start_continues_from_the_base_model(data, trained, tmp_path):
  examples, transform = data
  base = tf.saved_model.load(trained.serving_model_dir)
  base_values = {v.name: v.numpy() for v in base.variables}
  # Zero epochs of training: the warm-started model is the base model (BatchNorm statistics
  # re-estimated: none, as recalibration is off).
  args = training_fixtures.fn_args(examples, transform, str(tmp_path), epochs=0,
                                   batchnorm_recalibration_batches=0, warm_start=True,
                                   base_model=trained.serving_model_dir)
  model = trainer.train(args)
  for variable in model.variables:
    np.testing.assert_array_equal(variable.numpy(), base_values[variable.name], variable.name)
  # Off by default: the same base model is ignored.
  args = training_fixtures.fn_args(examples, transform, str(tmp_path / 'cold'), epochs=0,
                                   batchnorm_recalibration_batches=0,
                                   base_model=trained.serving_model_dir)
  cold = trainer.train(args)
  assert not np.array_equal(cold.get_layer('conv1_1').kernel.numpy(),
                            base_values['conv1_1/kernel:0'])


def test_warm_start_refuses_a_model_of_another_architecture(data, trained, tmp_path):
  examples, transform = data
  args = training_fixtures.fn_args(examples, transform, str(tmp_path), model_name='skresnet',
                                   epochs=0, warm_start=True,
                                   base_model=trained.serving_model_dir)
  with pytest.raises(ValueError, match='not a model of this architecture'):
    trainer.train(args)


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(('127.0.0.1', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


@pytest.mark.slow
def test_two_workers_train_together_and_agree_on_the_weights(data, tmp_path):
  examples, transform = data
  workers = [f'127.0.0.1:{port}' for port in _free_ports(2)]
  config = json.dumps({'examples_dir': examples, 'transform_dir': transform, 'epochs': 2,
                       'batch_size': 8, 'validation_percent': 25})
  processes = []
  for index in range(2):
    env = dict(os.environ, TF_CONFIG=json.dumps(
        {'cluster': {'worker': workers}, 'task': {'type': 'worker', 'index': index}}))
    env['PYTHONPATH'] = ROOT
    processes.append(subprocess.Popen(
        [sys.executable, '-m', 'tests.training_fixtures', str(tmp_path / f'worker{index}'),
         str(tmp_path / f'weights{index}.npz'), config],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
  outputs = []
  for process in processes:
    try:
      outputs.append(process.communicate(timeout=600)[0])
    except subprocess.TimeoutExpired:
      for p in processes:
        p.kill()
      raise
  for process, output in zip(processes, outputs):
    assert process.returncode == 0, output[-4000:]
  first, second = (np.load(tmp_path / f'weights{i}.npz') for i in range(2))
  assert int(first['replicas']) == int(second['replicas']) == 2
  assert set(first.files) == set(second.files)
  for name in first.files:
    np.testing.assert_allclose(first[name], second[name], rtol=1e-5, atol=1e-6, err_msg=name)
  # The chief exported the model; the other worker's copy went to a scratch folder.
  assert tf.io.gfile.exists(os.path.join(tmp_path, 'worker0', 'model', 'Format-Serving',
                                         'saved_model.pb'))
  assert not tf.io.gfile.exists(os.path.join(tmp_path, 'worker1', 'model'))
  # Both epochs ran on the two-replica strategy.
  with open(tmp_path / 'worker0' / 'model_run' / trainer.HISTORY_FILE) as f:
    history = json.load(f)
  assert history['replicas'] == 2 and len(history['history']['loss']) == 2
