"""The exported model's signatures: clients send what they have and get classes and embeddings.

Every signature applies the transform graph itself, so a client needs TensorFlow only:

  serving_default  serialized tf.Example (image_png) -> probabilities, class_id, category,
                   top5_class_ids, top5_categories, top5_probabilities
  embed            serialized tf.Example -> the above plus embedding (fc_1, 1024-d)
  serving_png      PNG bytes (any size, gray or RGB) -> as embed
  transform_features  serialized tf.Example (image_png, category) -> label (the class id):
                   the label TFMA's evaluation reads (ModelSpec.preprocessing_function_names)
"""
from typing import Dict

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from models import features

# Classes ranked per drawing (fewer when the model knows fewer classes).
TOP_K = 5
TRANSFORM_FEATURES = 'transform_features'
CLASSIFY_KEYS = ('probabilities', 'class_id', 'category', 'top5_class_ids', 'top5_categories',
                 'top5_probabilities')


def export_signatures(model: keras.Model,
                      tf_transform_output: tft.TFTransformOutput) -> Dict[str, tf.types.experimental.ConcreteFunction]:
  """The three signatures for `model.save(..., signatures=...)`."""
  # Attached to the model so the transform graph's assets are tracked and saved with it.
  model.tft_layer = tf_transform_output.transform_features_layer()
  embedder = keras.Model(model.input, [model.get_layer('fc_1').output, model.output])
  category_names = tf_transform_output.vocabulary_by_name(features.CATEGORY_VOCABULARY)
  categories = tf.constant(category_names, tf.string)
  top_k = min(TOP_K, len(category_names))
  image_spec = {features.IMAGE_KEY: tf_transform_output.raw_feature_spec()[features.IMAGE_KEY]}

  def predict(raw_images):
    image = model.tft_layer({features.IMAGE_KEY: raw_images})[features.IMAGE]
    embedding, logits = embedder(image, training=False)
    # Mixed-precision models compute in float16; clients always get float32.
    probabilities = tf.nn.softmax(tf.cast(logits, tf.float32))
    class_id = tf.argmax(probabilities, axis=-1)
    top = tf.math.top_k(probabilities, k=top_k)
    top_ids = tf.cast(top.indices, tf.int64)
    return {'probabilities': probabilities, 'class_id': class_id,
            'category': tf.gather(categories, class_id),
            'top5_class_ids': top_ids, 'top5_categories': tf.gather(categories, top_ids),
            'top5_probabilities': top.values,
            'embedding': tf.cast(embedding, tf.float32)}

  def parse(examples):
    return tf.io.parse_example(examples, image_spec)[features.IMAGE_KEY]

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve_examples(examples):
    outputs = predict(parse(examples))
    return {key: outputs[key] for key in CLASSIFY_KEYS}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def embed(examples):
    return predict(parse(examples))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='image_png')])
  def serve_png(image_png):
    return predict(image_png)

  raw_spec = tf_transform_output.raw_feature_spec()

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def transform_features(examples):
    transformed = model.tft_layer(tf.io.parse_example(examples, raw_spec))
    return {features.LABEL: transformed[features.LABEL]}

  return {'serving_default': serve_examples, 'embed': embed, 'serving_png': serve_png,
          TRANSFORM_FEATURES: transform_features}
