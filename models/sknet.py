"""skNet: the VGG-like network of the specification."""
import tf_keras as keras

from models import features
from models.layers import classifier_head, conv_bn_relu, image_input, max_pool

# (block, filters): two convolutions then a max-pool per block, as in the table.
BLOCKS = ((1, 64), (2, 128), (3, 128), (4, 256))


def build(num_classes: int, image_size: int = 128, batchnorm_momentum: float = 0.9) -> keras.Model:
  inputs = image_input(image_size, features.IMAGE)
  x = inputs
  for block, filters in BLOCKS:
    x = conv_bn_relu(x, filters, f'conv{block}_1', batchnorm_momentum)
    x = conv_bn_relu(x, filters, f'conv{block}_2', batchnorm_momentum)
    x = max_pool(x, f'maxpool{block}')
  return keras.Model(inputs, classifier_head(x, num_classes), name='sknet')
