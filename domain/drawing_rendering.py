"""Drawings as the PNGs people see, and as the tf.Examples ExampleGen emits."""
import io

import numpy as np
from PIL import Image, ImageDraw
import tensorflow as tf

from domain.drawing_records import BITMAP_SIDE, SIMPLIFIED_MAX, Drawing, Item
from models.features import CATEGORY_KEY, ID_KEY, IMAGE_KEY


def render_png(drawing: Drawing, size: int = 256, stroke_width: int = 3) -> bytes:
  """Black strokes on a white `size` x `size` grayscale PNG (what a person would see)."""
  scale = (size - 1) / SIMPLIFIED_MAX
  image = Image.new('L', (size, size), color=255)
  pen = ImageDraw.Draw(image)
  for xs, ys in drawing:
    points = [(x * scale, y * scale) for x, y in zip(xs, ys)]
    if len(points) == 1:
      points = points * 2  # A single point still leaves a dot.
    pen.line(points, fill=0, width=stroke_width, joint='curve')
  return _png(image)


def render_bitmap_png(row: bytes, size: int = 256) -> bytes:
  """A 28x28 numpy_bitmap row (white ink on black) as black ink on white, upscaled bilinearly
  to `size` x `size` so it meets the same PNG contract as rendered strokes."""
  pixels = 255 - np.frombuffer(row, dtype=np.uint8).reshape(BITMAP_SIDE, BITMAP_SIDE)
  return _png(Image.fromarray(pixels, mode='L').resize((size, size), Image.BILINEAR))


def render_item(item: Item, size: int = 256, stroke_width: int = 3) -> bytes:
  if isinstance(item, bytes):
    return render_bitmap_png(item, size)
  return render_png(item, size, stroke_width)


def _png(image: Image.Image) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format='PNG')
  return buffer.getvalue()


def to_example(drawing_id: str, category: str, png: bytes) -> tf.train.Example:
  def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
  return tf.train.Example(features=tf.train.Features(feature={
      IMAGE_KEY: _bytes(png),
      CATEGORY_KEY: _bytes(category.encode('utf-8')),
      ID_KEY: _bytes(drawing_id.encode('utf-8')),
  }))
