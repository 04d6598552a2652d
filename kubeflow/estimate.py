"""Sizes a cluster run: FLOPs of each model, time per epoch on GPUs, data volume per stage.

  python -m kubeflow.estimate --pipeline-root outputs/pipeline_root/quickdraw-tfx-smoke

FLOPs: the multiply-accumulates of every Conv2D and Dense layer of the Keras models in
models/ (2 FLOPs each), checked against TensorFlow's profiler on the same graph. Training
costs about 3x the forward pass (forward, gradient of the activations, gradient of the
weights). Data volumes: bytes per example measured on the artifacts of a finished (smoke)
run under `--pipeline-root`, extrapolated linearly to the target profile. docs/kubeflow.md
quotes this output.
"""
import argparse
import glob
import json
import os
import statistics
import sys
import time
from typing import Dict, List

from common import legacy_keras
from models.model_anatomy import layer_macs  # noqa: F401  (tests and callers use it here)
from pipeline import config as config_lib

# FP32 peak TFLOP/s without tensor cores (vendor data sheets); the models train in float32.
GPU_PEAK_TFLOPS = {'T4': 8.1, 'L4': 30.3, 'V100': 15.7, 'A100': 19.5}
# Assumed fraction of peak a Keras FP32 convnet of this size sustains: an assumption, not a
# measurement (no GPU here); the lower bound at 100% is printed next to it.
ASSUMED_UTILIZATION = 0.4
TRAINING_FLOPS_PER_FORWARD = 3


def profiler_flops(model, image_size: int) -> int:
  """Float operations of one forward pass as TensorFlow's profiler counts them."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  @tf.function(input_signature=[tf.TensorSpec([1, image_size, image_size, 1], tf.float32)])
  def forward(images):
    return model(images, training=False)

  graph = forward.get_concrete_function().graph
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options['output'] = 'none'
  return tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops


def model_flops(config: config_lib.PipelineConfig) -> Dict[str, Dict[str, float]]:
  from models import architectures  # pylint: disable=g-import-not-at-top
  result = {}
  for name in config.models:
    model = architectures.build(name, config.num_categories, image_size=config.image_size)
    macs = layer_macs(model)
    result[name] = {
        'parameters': model.count_params(),
        'forward_flops': 2 * sum(m for _, m in macs),
        'profiler_forward_flops': profiler_flops(model, config.image_size),
        'conv_flops': 2 * sum(m for layer, m in macs if layer.startswith('conv')),
    }
  return result


def _latest(pipeline_root: str, component: str, output: str) -> str:
  """The newest output folder of `component` under a local pipeline root."""
  runs = sorted(glob.glob(os.path.join(pipeline_root, component, output, '*')),
                key=lambda path: int(os.path.basename(path)))
  if not runs:
    raise FileNotFoundError(f'{pipeline_root}: no {component}/{output} artifact; run the '
                            'pipeline first (make run PROFILE=smoke)')
  return runs[-1]


def _size(path: str) -> int:
  if os.path.isfile(path):
    return os.path.getsize(path)
  return sum(os.path.getsize(os.path.join(folder, name))
             for folder, _, names in os.walk(path) for name in names)


def measured_volumes(pipeline_root: str, models) -> Dict[str, float]:
  """Bytes per train/test example and fixed artifact sizes of a finished run."""
  examples = _latest(pipeline_root, 'QuickDrawExampleGen', 'examples')
  with open(os.path.join(examples, 'manifest.json')) as f:
    manifest = json.load(f)
  counts = {split: sum(row[split] for row in manifest['categories'])
            for split in ('train', 'test')}
  volumes = {'run_categories': len(manifest['categories'])}
  for split, count in counts.items():
    volumes[f'{split}_examples'] = count
    volumes[f'{split}_bytes_per_example'] = _size(
        os.path.join(examples, f'Split-{split}')) / count
  volumes['statistics_bytes'] = _size(_latest(pipeline_root, 'StatisticsGen', 'statistics'))
  volumes['transform_graph_bytes'] = _size(_latest(pipeline_root, 'Transform',
                                                   'transform_graph'))
  for name in models:
    volumes[f'{name}_model_bytes'] = _size(_latest(pipeline_root, f'Trainer.{name}', 'model'))
    embeddings = _latest(pipeline_root, f'EmbeddingEvaluator.{name}', 'embeddings')
    volumes[f'{name}_embedding_bytes_per_test_example'] = _size(embeddings) / counts['test']
  return volumes


def _train_records(pipeline_root: str) -> List[bytes]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  examples = _latest(pipeline_root, 'QuickDrawExampleGen', 'examples')
  files = glob.glob(os.path.join(examples, 'Split-train', '*'))
  return list(tf.data.TFRecordDataset(files, compression_type='GZIP').as_numpy_iterator())


def decode_seconds_per_image(pipeline_root: str, repeats: int = 5) -> float:
  """Median time of the Transform graph's image step (PNG decode + area resize) per image,
  on one CPU thread. Call before anything else starts TensorFlow's runtime."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from models import preprocessing  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  records = _train_records(pipeline_root)
  pngs = tf.constant([tf.train.Example.FromString(r).features.feature['image_png']
                      .bytes_list.value[0] for r in records])
  step = tf.function(preprocessing.decode_and_resize)
  step(pngs)  # Traces once.
  timings = []
  for _ in range(repeats):
    start = time.perf_counter()
    step(pngs).numpy()
    timings.append((time.perf_counter() - start) / len(records))
  return statistics.median(timings)


def serialized_bytes_per_example(source: str, config: config_lib.PipelineConfig,
                                 per_category: int) -> float:
  """Mean serialized tf.Example size over `per_category` drawings of each category that
  `config` samples from `source`, rendered as ExampleGen renders them."""
  from components.example_gen import category_sampling  # pylint: disable=g-import-not-at-top
  from domain import drawing_rendering  # pylint: disable=g-import-not-at-top
  from domain import quickdraw_source  # pylint: disable=g-import-not-at-top
  categories = quickdraw_source.choose_categories(
      quickdraw_source.list_categories(source), config.num_categories, config.seed)
  sizes = []
  for category in categories:
    sample = category_sampling.sample_category(source, category, per_category, 0, config.seed)
    for drawing_id, drawing in sample.train:
      png = drawing_rendering.render_png(drawing, config.render_size, config.stroke_width)
      sizes.append(drawing_rendering.to_example(drawing_id, category, png).ByteSize())
  return statistics.mean(sizes)


def _gb(num_bytes: float) -> str:
  for unit, size in (('GB', 1e9), ('MB', 1e6), ('KB', 1e3)):
    if num_bytes >= size / 10:
      return f'{num_bytes / size:.2f} {unit}'
  return f'{num_bytes:.0f} B'


def report(target: config_lib.PipelineConfig, pipeline_root: str, cpus_per_gpu_pod: float,
           source: str, per_category: int) -> str:
  decode = decode_seconds_per_image(pipeline_root)  # First: it sets TensorFlow's threads.
  lines = [f'Target profile {target.profile}: {target.num_categories} categories x '
           f'({target.train_per_category} train + {target.test_per_category} test), '
           f'{target.image_size}x{target.image_size}']
  train_images = target.num_categories * target.train_per_category
  test_images = target.num_categories * target.test_per_category
  flops = model_flops(target)
  lines.append('\nFLOPs per image (forward; 1 MAC = 2 FLOPs)')
  lines.append('| model | parameters | forward GFLOPs (layer count) | (tf.profiler) | conv share '
               '| training GFLOPs (3x) | training PFLOPs per epoch |')
  lines.append('| --- | --- | --- | --- | --- | --- | --- |')
  for name, f in flops.items():
    training = TRAINING_FLOPS_PER_FORWARD * f['forward_flops']
    lines.append(f'| {name} | {f["parameters"] / 1e6:.1f} M | {f["forward_flops"] / 1e9:.2f} '
                 f'| {f["profiler_forward_flops"] / 1e9:.2f} | '
                 f'{f["conv_flops"] / f["forward_flops"]:.1%} | {training / 1e9:.2f} | '
                 f'{training * train_images / 1e15:.2f} |')

  input_seconds = decode * train_images / cpus_per_gpu_pod
  lines.append(f'\nInput pipeline: PNG decode + resize measured at {decode * 1e3:.2f} ms per image '
               f'on one thread of this CPU (median of 5 passes; the machine is shared) -> '
               f'{input_seconds:.0f} s of CPU per epoch of {train_images} images on the Trainer '
               f'pod\'s {cpus_per_gpu_pod:g} vCPUs, if it scales with cores')
  lines.append(f'\nSeconds per training epoch ({train_images} images), compute at '
               f'{ASSUMED_UTILIZATION:.0%} of FP32 peak (in brackets: at 100%, the lower bound)')
  lines.append('| GPU (FP32 peak) | ' + ' | '.join(flops) + ' |')
  lines.append('| --- |' + ' --- |' * len(flops))
  for gpu, peak in GPU_PEAK_TFLOPS.items():
    cells = []
    for f in flops.values():
      work = TRAINING_FLOPS_PER_FORWARD * f['forward_flops'] * train_images
      cells.append(f'{work / (peak * 1e12 * ASSUMED_UTILIZATION):.0f} '
                   f'({work / (peak * 1e12):.0f})')
    lines.append(f'| {gpu} ({peak} TFLOP/s) | ' + ' | '.join(cells) + ' |')

  volumes = measured_volumes(pipeline_root, target.models)
  smoke_records = _train_records(pipeline_root)
  smoke_serialized = statistics.mean(len(r) for r in smoke_records)
  target_serialized = serialized_bytes_per_example(source, target, per_category)
  # On-disk bytes per example = the smoke run's, scaled by how much bigger the target's own
  # categories' examples are than the smoke run's (drawing complexity varies by category).
  scale = target_serialized / smoke_serialized
  lines.append(f'\nData volumes, measured on {pipeline_root} ({volumes["run_categories"]} '
               f'categories, {volumes["train_examples"]} train + {volumes["test_examples"]} test '
               'examples) and extrapolated per example to the target profile. Serialized '
               f'tf.Example: {smoke_serialized:.0f} B on average in that run, '
               f'{target_serialized:.0f} B over {per_category} drawings of each of the '
               f'target\'s {target.num_categories} categories at {source} (rendered here), so '
               f'example sizes are scaled by {scale:.2f}')
  lines.append('| stage | measured | target profile |')
  lines.append('| --- | --- | --- |')
  for split, count in (('train', train_images), ('test', test_images)):
    per = volumes[f'{split}_bytes_per_example']
    lines.append(f'| Examples Split-{split} (gzip TFRecord) | {per:.0f} B per example | '
                 f'{_gb(per * scale * count)} |')
  epochs = {name: target.training[name].passes(train_images) for name in target.models}
  reads = (sum(epochs.values()) * volumes['train_bytes_per_example'] * scale * train_images)
  lines.append(f'| Trainers read Split-train ({" + ".join(f"{e:g}" for e in epochs.values())} '
               'epochs) '
               f'| | {_gb(reads)} |')
  lines.append(f'| Statistics | {_gb(volumes["statistics_bytes"])} | about the same (per '
               'feature, not per example) |')
  lines.append(f'| Transform graph + vocabulary | {_gb(volumes["transform_graph_bytes"])} | '
               'about the same |')
  for name in target.models:
    lines.append(f'| Model {name} (SavedModel) | {_gb(volumes[f"{name}_model_bytes"])} | '
                 'about the same (fc_2 grows with the classes) |')
    per = volumes[f'{name}_embedding_bytes_per_test_example']
    lines.append(f'| Embeddings {name} (npz) | {per:.0f} B per test example | '
                 f'{_gb(per * test_images)} |')
  return '\n'.join(lines)


def main(argv=None) -> int:
  legacy_keras.enable()  # Before TFX imports TensorFlow.
  parser = argparse.ArgumentParser(prog='python -m kubeflow.estimate', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--pipeline-root', required=True,
                      help='local pipeline root of a finished run, e.g. '
                      'outputs/pipeline_root/quickdraw-tfx-smoke')
  parser.add_argument('--profile', default='full', choices=config_lib.profile_names(),
                      help='the profile to size (default: %(default)s)')
  parser.add_argument('--cpus-per-gpu-pod', type=float, default=4.0)
  parser.add_argument('--source', help='where the target\'s categories are sampled from for '
                      'example sizes (default: as `quickdraw-tfx run`)')
  parser.add_argument('--drawings-per-category', type=int, default=5)
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  target = config_lib.PROFILES[args.profile]
  try:
    print(report(target, args.pipeline_root, args.cpus_per_gpu_pod,
                 args.source or config_lib.default_source(), args.drawings_per_category))
  except (FileNotFoundError, ValueError) as e:
    print(f'kubeflow.estimate: {e}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
