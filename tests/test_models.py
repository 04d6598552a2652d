"""The two architectures against the specification's layer tables."""
import pytest
import tf_keras as keras

from models import architectures

NUM_CLASSES = 7

SKNET_CONVS = [('conv1_1', 64), ('conv1_2', 64), ('conv2_1', 128), ('conv2_2', 128),
               ('conv3_1', 128), ('conv3_2', 128), ('conv4_1', 256), ('conv4_2', 256)]
SKRESNET_CONVS = [
    ('conv1_1', 64), ('conv1_2', 64), ('conv2_1', 64), ('conv2_2', 64), ('conv3_1', 64),
    ('conv3_2', 64), ('conv4_1', 128), ('conv5_1', 128), ('conv5_2', 128), ('conv6_1', 128),
    ('conv6_2', 128), ('conv7_1', 256), ('conv8_1', 256), ('conv8_2', 256), ('conv9_1', 256),
    ('conv9_2', 256), ('conv10_1', 256)]
SKNET_POOLS = ['maxpool1', 'maxpool2', 'maxpool3', 'maxpool4']
SKRESNET_POOLS = ['maxpool_1', 'maxpool_2', 'maxpool_3', 'maxpool_4']
# residual_k = the conv named first + the tensor named second, as in the table.
SKRESNET_RESIDUALS = {
    'residual_1': ('conv2_2', 'maxpool_1'), 'residual_2': ('conv3_2', 'residual_1'),
    'residual_3': ('conv5_2', 'maxpool_2'), 'residual_4': ('conv6_2', 'residual_3'),
    'residual_5': ('conv8_2', 'maxpool_3'), 'residual_6': ('conv9_2', 'residual_5')}


@pytest.fixture(scope='module', params=['sknet', 'skresnet'])
def model(request):
  return architectures.build(request.param, NUM_CLASSES)


def _producer(tensor) -> str:
  return tensor._keras_history.layer.name  # pylint: disable=protected-access


def _inbound(layer):
  inputs = layer.input if isinstance(layer.input, list) else [layer.input]
  return [_producer(t) for t in inputs]


def test_conv_layers_in_table_order(model):
  expected = SKNET_CONVS if model.name == 'sknet' else SKRESNET_CONVS
  convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
  assert [(l.name, l.filters) for l in convs] == expected
  for conv in convs:
    assert conv.kernel_size == (3, 3) and conv.strides == (1, 1), conv.name


def test_every_conv_is_followed_by_batchnorm_then_relu(model):
  for conv in (l for l in model.layers if isinstance(l, keras.layers.Conv2D)):
    bn = model.get_layer(conv.name + '_bn')
    relu = model.get_layer(conv.name + '_relu')
    assert isinstance(bn, keras.layers.BatchNormalization)
    assert isinstance(relu, keras.layers.ReLU)
    assert _inbound(bn) == [conv.name] and _inbound(relu) == [bn.name]


def test_max_pooling_is_3x3_stride_2_in_table_order(model):
  expected = SKNET_POOLS if model.name == 'sknet' else SKRESNET_POOLS
  pools = [l for l in model.layers if isinstance(l, keras.layers.MaxPooling2D)]
  assert [l.name for l in pools] == expected
  for pool in pools:
    assert pool.pool_size == (3, 3) and pool.strides == (2, 2), pool.name


def test_pooling_follows_the_right_convolution(model):
  before = ({'maxpool1': 'conv1_2', 'maxpool2': 'conv2_2', 'maxpool3': 'conv3_2',
             'maxpool4': 'conv4_2'} if model.name == 'sknet' else
            {'maxpool_1': 'conv1_2', 'maxpool_2': 'conv4_1', 'maxpool_3': 'conv7_1',
             'maxpool_4': 'conv10_1'})
  for pool, conv in before.items():
    assert _inbound(model.get_layer(pool)) == [conv + '_relu']


def test_skresnet_residual_additions_join_the_table_tensors():
  model = architectures.build('skresnet', NUM_CLASSES)
  adds = [l for l in model.layers if isinstance(l, keras.layers.Add)]
  assert [l.name for l in adds] == list(SKRESNET_RESIDUALS)
  for name, (conv, shortcut) in SKRESNET_RESIDUALS.items():
    assert _inbound(model.get_layer(name)) == [conv + '_relu', shortcut]


def test_sknet_has_no_residual_additions():
  model = architectures.build('sknet', NUM_CLASSES)
  assert not [l for l in model.layers if isinstance(l, keras.layers.Add)]


def test_head_fc1_is_1024_relu_and_fc2_gives_logits_per_class(model):
  fc_1, fc_2 = model.get_layer('fc_1'), model.get_layer('fc_2')
  assert fc_1.units == 1024 and fc_1.activation is keras.activations.relu
  assert fc_2.units == NUM_CLASSES and fc_2.activation is keras.activations.linear
  assert _inbound(fc_2) == ['fc_1']
  assert model.input_shape == (None, 128, 128, 1)
  assert model.output_shape == (None, NUM_CLASSES)
  # Four 3x3/2 'same' poolings: 128 -> 8, so fc_1 sees 8 * 8 * 256 features.
  assert fc_1.input_shape == (None, 8 * 8 * 256)


def test_unknown_model_name_is_refused():
  with pytest.raises(ValueError, match='unknown model'):
    architectures.build('vgg', NUM_CLASSES)
