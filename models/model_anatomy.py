"""A Keras model's anatomy: its layers with output shapes, parameters and FLOPs per image.

Read from the model itself (the exported SavedModel, loaded back into Keras), so the report's
architecture tables and the cluster sizing (kubeflow/estimate.py) count the network that was
trained, not a description of it. FLOPs are the multiply-accumulates of every Conv2D and
Dense layer, 2 FLOPs each; BatchNorm, ReLU, pooling and the residual additions are left out
(under 1% of the total, tests/test_kubeflow_estimate.py).
"""
from typing import Any, Dict, List, Tuple

# The layer whose activations are the search embedding (models/layers.py, signatures.py).
EMBEDDING_LAYER = 'fc_1'
LOGITS_LAYER = 'fc_2'
# Layers that follow a convolution and belong to its row: conv1_1, conv1_1_bn, conv1_1_relu.
_FOLDED_SUFFIXES = ('_bn', '_relu')


def graph_layers(model) -> list:
  """The layers of the model's graph: a SavedModel loaded back also holds layers that were
  only attached to it (the Trainer's transform layer), never called inside the network."""
  return [layer for layer in model.layers if _inbound_nodes(layer)]


def _inbound_nodes(layer) -> list:
  return getattr(layer, 'inbound_nodes', None) or getattr(layer, '_inbound_nodes', None) or []


def layer_macs(model) -> List[Tuple[str, int]]:
  """(layer name, multiply-accumulates for one image) of every Conv2D and Dense layer."""
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  rows = []
  for layer in graph_layers(model):
    if isinstance(layer, keras.layers.Conv2D):
      _, height, width, filters = layer.output_shape
      kernel_h, kernel_w = layer.kernel_size
      channels_in = layer.input_shape[-1]
      rows.append((layer.name, height * width * filters * kernel_h * kernel_w * channels_in))
    elif isinstance(layer, keras.layers.Dense):
      rows.append((layer.name, layer.input_shape[-1] * layer.units))
  return rows


def load_exported(saved_model_dir: str):
  """The Keras model inside a Trainer's exported SavedModel (no optimizer, not compiled)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  logger = tf.get_logger()
  level = logger.level
  # The loader warns of checkpoint values no revived object takes; none is a weight (the
  # anatomy of an export equals the built model's, tests/test_report_scheme.py).
  logger.setLevel('ERROR')
  try:
    return keras.models.load_model(saved_model_dir, compile=False)
  finally:
    logger.setLevel(level)


def _shape(shape) -> str:
  """'128x128x64' for (None, 128, 128, 64): one image's output."""
  if isinstance(shape, list):  # A layer with several outputs: the first.
    shape = shape[0]
  return 'x'.join(str(d) for d in tuple(shape)[1:])


def _kind(layer) -> str:
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  if isinstance(layer, keras.layers.Conv2D):
    return f'conv {layer.kernel_size[0]}x{layer.kernel_size[1]}, {layer.filters} filters'
  if isinstance(layer, keras.layers.MaxPooling2D):
    return f'max-pool {layer.pool_size[0]}x{layer.pool_size[1]}, stride {layer.strides[0]}'
  if isinstance(layer, keras.layers.Dense):
    activation = getattr(layer.activation, '__name__', '')
    return f'dense, {layer.units} units' + (f', {activation}' if activation != 'linear' else '')
  if isinstance(layer, keras.layers.InputLayer):
    return 'input'
  return type(layer).__name__.lower()


def _inbound(layer) -> List[str]:
  nodes = _inbound_nodes(layer)
  if not nodes:
    return []
  inbound = nodes[0].inbound_layers
  return [l.name for l in (inbound if isinstance(inbound, (list, tuple)) else [inbound])]


def anatomy(model) -> Dict[str, Any]:
  """The model's rows (a convolution with its BatchNorm and ReLU as one row), its totals, and
  where the residual additions and the embedding are. Plain values: JSON as is."""
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  macs = dict(layer_macs(model))
  rows: List[Dict[str, Any]] = []
  owner: Dict[str, str] = {}  # Layer name -> the row it is shown in.
  layers = graph_layers(model)
  for layer in layers:
    parameters = int(layer.count_params())
    head = rows[-1] if rows else None
    if head and layer.name.startswith(head['layer']) and \
        layer.name[len(head['layer']):] in _FOLDED_SUFFIXES:
      head['parameters'] += parameters
      head['parts'].append(type(layer).__name__)
      head['output_shape'] = _shape(layer.output_shape)
      owner[layer.name] = head['layer']
      continue
    row = {'layer': layer.name, 'kind': _kind(layer), 'output_shape': _shape(layer.output_shape),
           'parameters': parameters, 'flops': 2 * macs.get(layer.name, 0),
           'parts': [type(layer).__name__], 'role': ''}
    if isinstance(layer, keras.layers.Add):
      row['role'] = 'residual addition: ' + ' + '.join(owner.get(n, n) for n in _inbound(layer))
    elif layer.name == EMBEDDING_LAYER:
      row['role'] = f'the embedding ({layer.units}-d) used for similarity search'
    elif layer.name == LOGITS_LAYER:
      row['role'] = f'the logits of the {layer.units} categories'
    rows.append(row)
    owner[layer.name] = layer.name
  for row in rows:
    if len(row['parts']) > 1:
      row['kind'] += ' + ' + ' + '.join(
          {'BatchNormalization': 'BatchNorm'}.get(p, p) for p in row['parts'][1:])
    del row['parts']
  trainable = sum(int(w.shape.num_elements()) for layer in layers
                  for w in layer.trainable_weights)
  embedding = next((r for r in rows if r['layer'] == EMBEDDING_LAYER), None)
  return {'name': model.name, 'rows': rows,
          'input_shape': _shape(model.input_shape),
          'parameters': sum(r['parameters'] for r in rows), 'trainable_parameters': trainable,
          'forward_flops': sum(r['flops'] for r in rows),
          'convolutions': sum(1 for l in layers if isinstance(l, keras.layers.Conv2D)),
          'residual_additions': sum(1 for r in rows if r['role'].startswith('residual')),
          'embedding_dim': int(embedding['output_shape']) if embedding else None}
