"""kubeflow/estimate.py's cluster sizing: its FLOP count per layer against the specification's
tables worked out by hand, and against TensorFlow's profiler."""
from kubeflow import estimate
from models import architectures


def test_flop_count_follows_the_specification_tables():
  """Multiply-accumulates per layer against the tables worked out by hand (3x3 convs,
  'same' padding, pools halving the side)."""
  macs = dict(estimate.layer_macs(architectures.build('sknet', 100)))
  assert macs['conv1_1'] == 128 * 128 * 64 * 9 * 1
  assert macs['conv1_2'] == 128 * 128 * 64 * 9 * 64
  assert macs['conv2_1'] == 64 * 64 * 128 * 9 * 64
  assert macs['conv4_2'] == 16 * 16 * 256 * 9 * 256
  assert macs['fc_1'] == 8 * 8 * 256 * 1024 and macs['fc_2'] == 1024 * 100
  assert len(macs) == 10
  resnet = dict(estimate.layer_macs(architectures.build('skresnet', 100)))
  assert resnet['conv2_1'] == 64 * 64 * 64 * 9 * 64  # After maxpool_1: 64x64.
  assert resnet['conv10_1'] == 16 * 16 * 256 * 9 * 256
  assert len(resnet) == 19


def test_flop_count_agrees_with_tensorflows_profiler():
  model = architectures.build('sknet', 10)
  counted = 2 * sum(macs for _, macs in estimate.layer_macs(model))
  # The profiler also counts BatchNorm and the dense biases: a little more.
  assert counted <= estimate.profiler_flops(model, 128) <= counted * 1.01
