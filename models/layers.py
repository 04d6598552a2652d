"""Building blocks named as in the specification's layer tables (conv1_1 ... fc_2)."""
import tf_keras as keras

# The specification: every convolution is 3x3 and followed by BatchNorm and ReLU;
# max-pooling is a 3x3 window with stride 2.
CONV_KERNEL = 3
POOL_SIZE = 3
POOL_STRIDE = 2


def conv_bn_relu(x, filters: int, name: str, batchnorm_momentum: float):
  """`name` is the convolution; its BatchNorm and ReLU are `name`_bn and `name`_relu."""
  x = keras.layers.Conv2D(filters, CONV_KERNEL, padding='same', use_bias=False,
                          kernel_initializer='he_normal', name=name)(x)
  x = keras.layers.BatchNormalization(momentum=batchnorm_momentum, name=name + '_bn')(x)
  return keras.layers.ReLU(name=name + '_relu')(x)


def max_pool(x, name: str):
  return keras.layers.MaxPooling2D(POOL_SIZE, strides=POOL_STRIDE, padding='same', name=name)(x)


def classifier_head(x, num_classes: int):
  """fc_1 (1024, ReLU): the embedding; fc_2: the logits, computed in float32 under a mixed
  precision policy (bfloat16 logits lose the small differences between classes)."""
  x = keras.layers.Flatten(name='flatten')(x)
  x = keras.layers.Dense(1024, activation='relu', name='fc_1')(x)
  return keras.layers.Dense(num_classes, name='fc_2', dtype='float32')(x)


def image_input(image_size: int, name: str):
  return keras.Input(shape=(image_size, image_size, 1), name=name)
