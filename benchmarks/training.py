"""Training speed benchmarks (results: benchmarks/README.md, "## Training").

  python benchmarks/training.py flops      # FLOPs per image; achieved FLOP/s, skResNet vs skNet
  python benchmarks/training.py profile    # time per op type in one training step, both models
  python benchmarks/training.py input --pipeline-root PATH [--precision mixed_bfloat16]
                                           # Trainer input vs in-memory tensors, same precision
  python benchmarks/training.py precision  # mixed bfloat16 / float16 and XLA against float32
  python benchmarks/training.py teardown --pipeline-root PATH
                                           # seconds fit() takes to return after its last
                                           # step, tf.data autotuning on and off

Every comparison runs its variants interleaved in one process (A B A B ...) and reports the
median, so a machine shared with other work slows all variants alike.
"""
import argparse
import collections
import json
import os
import statistics
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import legacy_keras  # pylint: disable=g-import-not-at-top
legacy_keras.enable()  # Before TensorFlow is imported.

# pylint: disable=g-import-not-at-top
import tensorflow as tf
import tf_keras as keras

from benchmarks import result_paths
from models import architectures
from models import precision
from models import trainer

MODELS = ('sknet', 'skresnet')
NUM_CLASSES = 10
IMAGE_SIZE = 128


def _build(name: str, jit_compile: bool = False, policy_name: str = 'float32'):
  with precision.computing_in(policy_name):
    model = architectures.build(name, NUM_CLASSES, image_size=IMAGE_SIZE)
  model.compile(keras.optimizers.Adam(3e-4), trainer.SmoothedCrossEntropy(NUM_CLASSES),
                jit_compile=jit_compile)
  return model


def _random_batch(batch_size: int):
  return (tf.random.uniform([batch_size, IMAGE_SIZE, IMAGE_SIZE, 1]),
          tf.random.uniform([batch_size], 0, NUM_CLASSES, tf.int64))


def forward_flops(model: keras.Model) -> int:
  """FLOPs of one image's forward pass as TensorFlow's profiler counts them (frozen graph)."""
  from tensorflow.python.framework import convert_to_constants
  function = tf.function(lambda x: model(x, training=False)).get_concrete_function(
      tf.TensorSpec([1, IMAGE_SIZE, IMAGE_SIZE, 1], tf.float32))
  frozen = convert_to_constants.convert_variables_to_constants_v2(function)
  options = tf.compat.v1.profiler.ProfileOptionBuilder(
      tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()).with_empty_output().build()
  return tf.compat.v1.profiler.profile(graph=frozen.graph, run_meta=tf.compat.v1.RunMetadata(),
                                       cmd='op', options=options).total_float_ops


def layer_flops(model: keras.Model) -> int:
  """The same count from the layer shapes: 2 x multiply-adds of convolutions and dense layers."""
  total = 0
  for layer in model.layers:
    if isinstance(layer, keras.layers.Conv2D):
      _, height, width, filters = layer.output_shape
      kh, kw = layer.kernel_size
      total += 2 * height * width * filters * kh * kw * layer.input_shape[-1]
    elif isinstance(layer, keras.layers.Dense):
      total += 2 * layer.input_shape[-1] * layer.units
  return total


def _images_per_second(step, batch_size: int, steps: int):
  """(images per wall-clock second, images per CPU second of this process)."""
  start, start_cpu = time.perf_counter(), time.process_time()
  for _ in range(steps):
    step()
  images = steps * batch_size
  return (images / (time.perf_counter() - start),
          images / max(time.process_time() - start_cpu, 1e-9))


def interleaved(variants, batch_size: int, steps: int, repeats: int, cpu_rates=None):
  """{name: [images/s per repeat]} with the variants timed in turn, `repeats` rounds.

  On a machine shared with other work, wall-clock rates swing with the neighbours' load;
  images per CPU-second of this process (into `cpu_rates` when given) swing much less.
  """
  for name, step in variants.items():  # Trace (or compile) and warm up every variant first.
    start = time.perf_counter()
    step()
    print(f'  {name}: first step (tracing, compiling) {time.perf_counter() - start:.1f} s',
          flush=True)
  rates = collections.defaultdict(list)
  for round_number in range(repeats):
    for name, step in variants.items():
      wall, cpu = _images_per_second(step, batch_size, steps)
      rates[name].append(wall)
      if cpu_rates is not None:
        cpu_rates.setdefault(name, []).append(cpu)
    print(f'  round {round_number + 1}/{repeats}: ' + ', '.join(
        f'{name} {rates[name][-1]:.2f}' for name in variants), flush=True)
  return dict(rates)


def _median(values):
  return statistics.median(values)


def cmd_flops(args) -> dict:
  x, y = _random_batch(args.batch_size)
  models = {name: _build(name) for name in MODELS}
  counts = {name: {'profiler_forward_flops': forward_flops(model),
                   'layer_forward_flops': layer_flops(model)} for name, model in models.items()}
  cpu_rates = {}
  rates = interleaved({name: (lambda m=model: m.train_on_batch(x, y))
                       for name, model in models.items()}, args.batch_size, args.steps,
                      args.repeats, cpu_rates)
  result = {'batch_size': args.batch_size, 'steps': args.steps, 'repeats': args.repeats}
  for name in MODELS:
    rate, cpu_rate = _median(rates[name]), _median(cpu_rates[name])
    # A training step is about 3 forward passes (forward, input gradients, weight gradients).
    flops = 3 * counts[name]['profiler_forward_flops']
    result[name] = {**counts[name], 'images_per_second': rates[name],
                    'median_images_per_second': rate, 'training_gflop_per_s': flops * rate / 1e9,
                    'images_per_cpu_second': cpu_rates[name],
                    'training_gflop_per_cpu_second': flops * cpu_rate / 1e9}
  for key in ('training_gflop_per_s', 'training_gflop_per_cpu_second'):
    result[f'skresnet_over_sknet_{key}'] = result['skresnet'][key] / result['sknet'][key]
  return result


def _step_stats_by_op(name: str, batch_size: int, runs: int) -> dict:
  """Seconds per op type in a training step (forward + gradients + Adam), from a TF1 trace."""
  graph = tf.Graph()
  with graph.as_default():
    model = architectures.build(name, NUM_CLASSES, image_size=IMAGE_SIZE)
    x, y = _random_batch(batch_size)
    logits = model(x, training=True)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
    train_op = tf.compat.v1.train.AdamOptimizer(3e-4).minimize(loss)
    # Without BatchNorm's moving-average updates (element-wise, small): in graph mode Keras
    # also keeps updates for the model's build-time placeholder, which cannot run unfed.
    updates = []
    session = tf.compat.v1.Session(graph=graph)
    session.run(tf.compat.v1.global_variables_initializer())
    session.run([train_op] + updates)  # Warm-up.
    totals = collections.Counter()
    for _ in range(runs):
      metadata = tf.compat.v1.RunMetadata()
      session.run([train_op] + updates, options=tf.compat.v1.RunOptions(
          trace_level=tf.compat.v1.RunOptions.FULL_TRACE), run_metadata=metadata)
      for device in metadata.step_stats.dev_stats:
        for node in device.node_stats:
          op = node.timeline_label.split('(')[0].split('=')[-1].strip() or node.node_name
          op = op.split(' ')[0] if op else node.node_name
          totals[op] += node.op_end_rel_micros / 1e6 / runs
  return dict(totals)


def cmd_profile(args) -> dict:
  result = {'batch_size': args.batch_size, 'runs': args.steps}
  for name in MODELS:
    stats = _step_stats_by_op(name, args.batch_size, args.steps)
    total = sum(stats.values())
    result[f'{name}_conv_share'] = sum(
        seconds for op, seconds in stats.items() if 'Conv2D' in op) / total
    top = sorted(stats.items(), key=lambda item: -item[1])[:12]
    result[name] = {'seconds_per_step_summed_over_ops': total,
                    'top_ops': {op: round(seconds, 3) for op, seconds in top}}
    print(f'{name}: {total:.2f} s of op time per step; ' + ', '.join(
        f'{op} {seconds:.2f}' for op, seconds in top), flush=True)
  return result


def cmd_precision(args) -> dict:
  x, y = _random_batch(args.batch_size)
  variants = {}
  options = {'float32': {}, 'mixed_bfloat16': {'policy_name': 'mixed_bfloat16'},
             'mixed_float16': {'policy_name': 'mixed_float16'}, 'xla': {'jit_compile': True}}
  for label in args.variants.split(','):
    kwargs = options[label]
    model = _build(args.model, **kwargs)
    variants[label] = lambda m=model: m.train_on_batch(x, y)
  cpu_rates = {}
  rates = interleaved(variants, args.batch_size, args.steps, args.repeats, cpu_rates)
  return {'model': args.model, 'batch_size': args.batch_size,
          **{label: {'images_per_second': r, 'median': _median(r),
                     'images_per_cpu_second': cpu_rates[label],
                     'median_per_cpu_second': _median(cpu_rates[label])}
             for label, r in rates.items()}}


def _latest(pipeline_root: str, node: str, key: str) -> str:
  folder = os.path.join(pipeline_root, node, key)
  runs = sorted(os.listdir(folder), key=int)
  return os.path.join(folder, runs[-1])


def _trainer_input(pipeline_root: str):
  """(files, data accessor, transform output) of a pipeline run, as the Trainer gets them."""
  import tensorflow_transform as tft
  from tfx.components.trainer import fn_args_utils
  from tfx.components.util import tfxio_utils
  from tfx.types import artifact_utils
  from tfx.types import standard_artifacts

  examples = standard_artifacts.Examples()
  examples.uri = _latest(pipeline_root, 'QuickDrawExampleGen', 'examples')
  examples.split_names = artifact_utils.encode_split_names(['train', 'test'])
  accessor = fn_args_utils.DataAccessor(
      tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([examples], []),
      record_batch_factory=None, data_view_decode_fn=None)
  transform_output = tft.TFTransformOutput(_latest(pipeline_root, 'Transform', 'transform_graph'))
  return [os.path.join(examples.uri, 'Split-train', '*')], accessor, transform_output


def _whole_split(files, accessor, transform_output) -> int:
  """The Trainer's shuffle buffer for these files: every record of the split."""
  count = trainer._count_examples  # pylint: disable=protected-access
  return trainer.shuffle_buffer_size(0, sum(count(files, accessor, transform_output, 0)))


def cmd_teardown(args) -> dict:
  """How long fit() takes to return after its last step, on the Trainer's repeated input with
  tf.data autotuning on and off: the autotuning thread holds the iterator's destructor.

  The model is a small one, so the input pipeline does most of the work, as on 2 cores.
  """
  files, accessor, transform_output = _trainer_input(args.pipeline_root)
  buffer = _whole_split(files, accessor, transform_output)

  class EndOfTraining(keras.callbacks.Callback):

    def on_train_end(self, logs=None):
      self.at = time.perf_counter()

  def fit_once(autotune: bool):
    dataset = trainer._dataset(files, accessor, transform_output, args.batch_size,  # pylint: disable=protected-access
                               shuffle=True, seed=0, shuffle_buffer=buffer, repeat=True)
    options = tf.data.Options()
    options.autotune.enabled = autotune
    model = keras.Sequential([
        keras.layers.AveragePooling2D(8, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 1)),
        keras.layers.Flatten(), keras.layers.Dense(NUM_CLASSES)])
    model.compile('adam', keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    end = EndOfTraining()
    start = time.perf_counter()
    model.fit(dataset.with_options(options), steps_per_epoch=args.steps, epochs=2, verbose=0,
              callbacks=[end])
    returned = time.perf_counter()
    return {'fit_seconds': returned - start, 'teardown_seconds': returned - end.at}

  runs = {'autotune_on': [], 'autotune_off': []}
  for _ in range(args.repeats):
    for label in runs:
      runs[label].append(fit_once(label == 'autotune_on'))
      print(f'  {label}: {runs[label][-1]}', flush=True)
  return {'batch_size': args.batch_size, 'steps_per_epoch': args.steps, 'epochs': 2,
          'repeats': args.repeats, 'runs': runs,
          'median_teardown_seconds': {label: _median([r['teardown_seconds'] for r in rows])
                                      for label, rows in runs.items()}}


def cmd_input(args) -> dict:
  """The Trainer's tf.data input (raw PNG examples -> transform graph -> batches) against the
  same model fed one in-memory batch, on the examples and transform graph of a pipeline run."""
  files, accessor, transform_output = _trainer_input(args.pipeline_root)
  buffer = _whole_split(files, accessor, transform_output)

  def pipeline_input(augmentation=None):
    # Repeated so a timing never waits on the end of the (small) smoke split.
    return iter(trainer._dataset(files, accessor, transform_output, args.batch_size,  # pylint: disable=protected-access
                                 shuffle=True, seed=0, shuffle_buffer=buffer,
                                 augmentation=augmentation)
                .unbatch().repeat().batch(args.batch_size, drop_remainder=True))

  # The input pipeline alone: how many images/s it can deliver with the whole machine.
  batches = pipeline_input()
  next(batches)
  start = time.perf_counter()
  for _ in range(args.input_only_batches):
    next(batches)
  input_only = args.input_only_batches * args.batch_size / (time.perf_counter() - start)
  print(f'  input pipeline alone: {input_only:.1f} images/s', flush=True)

  result = {'batch_size': args.batch_size, 'steps': args.steps, 'repeats': args.repeats,
            'precision': args.precision,
            'examples': result_paths.portable(os.path.dirname(os.path.dirname(files[0]))),
            'input_pipeline_alone_images_per_second': input_only}
  from models import augmentation as augmentation_lib
  for name in MODELS:
    model = _build(name, policy_name=args.precision)
    memory = next(pipeline_input())  # One real batch, held in memory.
    feeds = {'in_memory': lambda: memory, 'trainer_input': pipeline_input().__next__,
             'trainer_input_augmented': pipeline_input(augmentation_lib.Augmentation()).__next__}
    variants = {label: (lambda f=feed: model.train_on_batch(*f())) for label, feed in feeds.items()}
    cpu_rates = {}
    rates = interleaved(variants, args.batch_size, args.steps, args.repeats, cpu_rates)
    medians = {label: _median(r) for label, r in rates.items()}
    cpu_medians = {label: _median(r) for label, r in cpu_rates.items()}
    result[name] = {'images_per_second': rates, 'median': medians,
                    'images_per_cpu_second': cpu_rates, 'median_per_cpu_second': cpu_medians,
                    'trainer_over_in_memory': medians['trainer_input'] / medians['in_memory'],
                    'augmented_over_in_memory':
                        medians['trainer_input_augmented'] / medians['in_memory'],
                    'trainer_over_in_memory_per_cpu_second':
                        cpu_medians['trainer_input'] / cpu_medians['in_memory']}
  return result


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('command', choices=('flops', 'profile', 'input', 'precision', 'teardown'))
  parser.add_argument('--batch-size', type=int, default=32)
  parser.add_argument('--steps', type=int, default=3, help='training steps per timing')
  parser.add_argument('--repeats', type=int, default=3, help='interleaved rounds (median)')
  parser.add_argument('--model', default='sknet', choices=MODELS, help='for precision')
  parser.add_argument('--variants', default='float32,mixed_bfloat16,xla',
                      help='for precision: comma-separated of float32, mixed_bfloat16, '
                      'mixed_float16 (~80x slower on CPUs without float16 kernels), xla')
  parser.add_argument('--precision', default='float32',
                      choices=[s for s in precision.SETTINGS if s != 'auto'],
                      help='for input: the Keras policy of both variants')
  parser.add_argument('--pipeline-root', help='for input: a run\'s pipeline root, e.g. '
                      'outputs/pipeline_root/quickdraw-tfx-smoke')
  parser.add_argument('--input-only-batches', type=int, default=20)
  parser.add_argument('--output', help='also write the result as JSON here')
  args = parser.parse_args(argv)
  if args.command in ('input', 'teardown') and not args.pipeline_root:
    parser.error(f'{args.command} needs --pipeline-root (run `make run PROFILE=smoke` first)')
  started = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
  result = {'command': args.command, 'started': started, 'cpus': os.cpu_count(),
            'machine': {**precision.describe_machine(),
                        'flags': ' '.join(sorted(precision.cpu_flags()))},
            **globals()['cmd_' + args.command](args)}
  emit(result, args.output)
  return 0


def emit(result: dict, output_path=None, quiet: bool = False) -> None:
  """Prints the result as JSON (unless `quiet`) and, with a path, writes it there too."""
  text = json.dumps(result, indent=2, default=float)
  if not quiet:
    print(text)
  if output_path:
    with open(output_path, 'w') as f:
      f.write(text + '\n')


if __name__ == '__main__':
  sys.exit(main())
