"""Transform's preprocessing_fn: the one place where raw examples become model input.

The exported models embed this graph, so training and serving decode, resize and scale
images identically, and the category vocabulary travels with the model.
"""
import tensorflow as tf
import tensorflow_transform as tft

from models import features

# The specification's input size; the pipeline passes its own through Transform's custom_config.
IMAGE_SIZE = 128


def decode_and_resize(png_bytes: tf.Tensor, image_size: int = IMAGE_SIZE) -> tf.Tensor:
  """[batch] PNG strings of any size -> [batch, size, size, 1] float32, ink = 1, paper = 0."""
  def decode(one_png):
    image = tf.io.decode_png(one_png, channels=1)
    # 'area' averages the source pixels: thin strokes stay visible when shrinking 256 -> 128.
    return tf.image.resize(image, [image_size, image_size], method='area')
  images = tf.map_fn(decode, png_bytes, fn_output_signature=tf.TensorSpec(
      [image_size, image_size, 1], tf.float32))
  return 1.0 - images / 255.0


def preprocessing_fn(inputs, custom_config=None):
  image_size = int((custom_config or {}).get('image_size', IMAGE_SIZE))
  png = tf.reshape(inputs[features.IMAGE_KEY], [-1])
  category = tf.reshape(inputs[features.CATEGORY_KEY], [-1])
  return {
      features.IMAGE: decode_and_resize(png, image_size),
      features.LABEL: tft.compute_and_apply_vocabulary(
          category, vocab_filename=features.CATEGORY_VOCABULARY),
  }
