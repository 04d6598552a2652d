"""Version folders for the registry readers' and the server's tests: model files that pass the
readers' checks without being a model (for fake searchers), and a tiny real model that the
search server loads and runs."""
import io
import os

import numpy as np
from PIL import Image

from serving import registry


def png(box, side: int = 64) -> bytes:
  """A gray PNG query: white, with a black rectangle at `box` (left, top, right, bottom)."""
  image = Image.new('L', (side, side), color=255)
  image.paste(0, box)
  buffer = io.BytesIO()
  image.save(buffer, format='PNG')
  return buffer.getvalue()


def write_model_files(folder: str) -> None:
  """saved_model.pb with the `serving_png` signature and a variables index: what the readers
  check. Not loadable by TensorFlow (its graph is empty)."""
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
  saved_model = saved_model_pb2.SavedModel(saved_model_schema_version=1)
  graph = saved_model.meta_graphs.add()
  graph.signature_def[registry.SEARCH_SIGNATURE].method_name = 'tensorflow/serving/predict'
  os.makedirs(os.path.join(folder, 'variables'), exist_ok=True)
  with open(os.path.join(folder, registry.SAVED_MODEL_FILE), 'wb') as f:
    f.write(saved_model.SerializeToString())
  with open(os.path.join(folder, registry.VARIABLES_INDEX), 'wb') as f:
    f.write(b'index')


def write_tiny_model(folder: str, categories=('box', 'line')) -> None:
  """A real SavedModel with the `serving_png` signature's outputs: the embedding is the PNG
  decoded, area-resized to 4x4 and flattened (16-d); the category is by mean brightness."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  names = tf.constant(list(categories))

  class Tiny(tf.Module):

    def __init__(self):
      super().__init__()
      self.scale = tf.Variable(1.0 / 255.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='image_png')])
    def serving_png(self, image_png):
      def one(png):
        image = tf.image.resize(tf.io.decode_png(png, channels=1), [4, 4], method='area')
        return tf.reshape(image, [16]) * self.scale
      embedding = tf.map_fn(one, image_png, fn_output_signature=tf.float32)
      dark = tf.reduce_mean(embedding, axis=1, keepdims=True)
      probabilities = tf.concat([dark, 1.0 - dark], axis=1)
      top = tf.math.top_k(probabilities, k=2)
      return {'embedding': embedding, 'probabilities': probabilities,
              'category': tf.gather(names, tf.argmax(probabilities, axis=1)),
              'top5_categories': tf.gather(names, top.indices),
              'top5_probabilities': top.values}

  module = Tiny()
  tf.saved_model.save(module, folder, signatures={registry.SEARCH_SIGNATURE: module.serving_png})


def write_gallery(folder: str, pngs, categories) -> None:
  registry.write_gallery(os.path.join(folder, registry.GALLERY_FILE), registry.Gallery(
      embedding=np.zeros((len(pngs), 16), np.float32), category=np.array(categories),
      id=np.array([f'{c}/{i}' for i, c in enumerate(categories)]),
      split=np.array(['test'] * len(pngs)), png=list(pngs)))
