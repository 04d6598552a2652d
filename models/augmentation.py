"""Sketch augmentation inside tf.data: small random affine maps and stroke-width jitter.

Images are [batch, size, size, 1] floats with ink = 1 on paper = 0 (models/preprocessing.py),
so points moved in from outside the canvas are filled with 0 (paper) and a 3x3 max filter
thickens strokes by one pixel on each side.
"""
import dataclasses
import math

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Augmentation:
  # Largest shift as a fraction of the side, scale change as a fraction, rotation in degrees.
  shift: float = 0.08
  scale: float = 0.1
  rotation_degrees: float = 10.0
  # Probability that an image's strokes are thickened (0 = never).
  stroke_jitter: float = 0.0


def random_affine(images: tf.Tensor, augmentation: Augmentation) -> tf.Tensor:
  """Each image rotated, scaled and shifted about its centre by its own random amounts."""
  shape = tf.shape(images)
  batch, height, width = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)

  def uniform(limit):
    return tf.random.uniform([batch], -limit, limit)

  angle = uniform(augmentation.rotation_degrees * math.pi / 180)
  scale = 1.0 + uniform(augmentation.scale)
  shift_x, shift_y = uniform(augmentation.shift) * width, uniform(augmentation.shift) * height
  # The transform maps output pixels to input pixels: the inverse of "scale, rotate, shift".
  cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
  center_x, center_y = (width - 1) / 2, (height - 1) / 2
  a0, a1 = cos, sin
  b0, b1 = -sin, cos
  a2 = center_x - a0 * (center_x + shift_x) - a1 * (center_y + shift_y)
  b2 = center_y - b0 * (center_x + shift_x) - b1 * (center_y + shift_y)
  zeros = tf.zeros_like(angle)
  transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
  return tf.raw_ops.ImageProjectiveTransformV3(
      images=images, transforms=transforms, output_shape=shape[1:3],
      interpolation='BILINEAR', fill_mode='CONSTANT', fill_value=0.0)


def stroke_jitter(images: tf.Tensor, probability: float) -> tf.Tensor:
  """Thickens the strokes (3x3 grey dilation) of a random `probability` share of images."""
  thick = tf.nn.max_pool2d(images, ksize=3, strides=1, padding='SAME')
  draw = tf.random.uniform([tf.shape(images)[0], 1, 1, 1])
  return tf.where(draw < probability, thick, images)


def augment(images: tf.Tensor, augmentation: Augmentation) -> tf.Tensor:
  images = random_affine(images, augmentation)
  if augmentation.stroke_jitter > 0:
    images = stroke_jitter(images, augmentation.stroke_jitter)
  return images
