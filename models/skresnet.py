"""skResNet: the residual network of the specification, read off its table."""
import tf_keras as keras

from models import features
from models.layers import classifier_head, conv_bn_relu, image_input, max_pool


def build(num_classes: int, image_size: int = 128, batchnorm_momentum: float = 0.9) -> keras.Model:
  def conv(x, filters, name):
    return conv_bn_relu(x, filters, name, batchnorm_momentum)

  def residual(x, shortcut, stage, filters, index):
    """conv<stage>_1, conv<stage>_2, then residual_<index> = conv<stage>_2 + shortcut."""
    y = conv(x, filters, f'conv{stage}_1')
    y = conv(y, filters, f'conv{stage}_2')
    return keras.layers.Add(name=f'residual_{index}')([y, shortcut])

  inputs = image_input(image_size, features.IMAGE)
  x = conv(inputs, 64, 'conv1_1')
  x = conv(x, 64, 'conv1_2')
  pool = max_pool(x, 'maxpool_1')
  x = residual(pool, pool, 2, 64, 1)
  x = residual(x, x, 3, 64, 2)
  x = conv(x, 128, 'conv4_1')
  pool = max_pool(x, 'maxpool_2')
  x = residual(pool, pool, 5, 128, 3)
  x = residual(x, x, 6, 128, 4)
  x = conv(x, 256, 'conv7_1')
  pool = max_pool(x, 'maxpool_3')
  x = residual(pool, pool, 8, 256, 5)
  x = residual(x, x, 9, 256, 6)
  x = conv(x, 256, 'conv10_1')
  x = max_pool(x, 'maxpool_4')
  return keras.Model(inputs, classifier_head(x, num_classes), name='skresnet')
