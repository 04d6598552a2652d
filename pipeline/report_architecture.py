"""The report's architecture tables: each exported model's layers, and the two side by side.

The rows are models/model_anatomy.py's reading of the SavedModel each Trainer exported
(`ModelResults.architecture`): a convolution with its BatchNorm and ReLU is one row, the
residual additions and fc_1 are named in the last column. Nothing here describes the networks
from memory; a model whose export could not be read has no table.
"""
from typing import List, Optional

from pipeline.report_data import ModelResults, RunResults
from pipeline.report_tables import Table


def count(value: int) -> str:
  return f'{value:,}'


def gflops(flops: float) -> str:
  return f'{flops / 1e9:.2f}'


def layers(model: ModelResults) -> Optional[Table]:
  """One row per layer of the exported model, then the totals."""
  anatomy = model.architecture
  if not anatomy.get('rows'):
    return None
  rows = [[f'`{r["layer"]}`', r['kind'], r['output_shape'], count(r['parameters']),
           f'{r["flops"] / 1e6:,.1f}' if r['flops'] else '', r['role']]
          for r in anatomy['rows']]
  rows.append(['**total**', '', '', f'**{count(anatomy["parameters"])}**',
               f'**{anatomy["forward_flops"] / 1e6:,.1f}**', ''])
  return Table(['layer', 'what it is', 'output shape', 'parameters', 'MFLOPs per image',
                'role'], rows)


def summary(run: RunResults) -> Optional[Table]:
  """The models' totals side by side (models whose export was read)."""
  models = [m for m in run.models if m.architecture.get('rows')]
  if not models:
    return None
  keys = (('input', lambda a: a['input_shape']),
          ('convolutions (3x3 or other)', lambda a: str(a['convolutions'])),
          ('residual additions', lambda a: str(a['residual_additions'])),
          ('embedding (fc_1) dimension', lambda a: str(a['embedding_dim'] or '')),
          ('parameters', lambda a: count(a['parameters'])),
          ('trainable parameters', lambda a: count(a['trainable_parameters'])),
          ('GFLOPs per image (forward)', lambda a: gflops(a['forward_flops'])))
  return Table(['exported model'] + [m.title for m in models],
               [[label] + [show(m.architecture) for m in models] for label, show in keys])


def statements(run: RunResults) -> List[str]:
  """What the tables show about the two designs, from their counts."""
  models = [m for m in run.models if m.architecture.get('rows')]
  points = []
  for m in models:
    a = m.architecture
    embedding = next((r for r in a['rows'] if r['role'].startswith('the embedding')), None)
    fc1 = (f'; its fc_1 layer holds {count(embedding["parameters"])} of them '
           f'({embedding["parameters"] / a["parameters"]:.0%})' if embedding else '')
    design = (f'{a["convolutions"]} convolutions and {a["residual_additions"]} residual '
              'additions (the table names what each one adds)'
              if a['residual_additions'] else
              f'{a["convolutions"]} convolutions in a plain stack with max-pooling, no shortcut '
              '(VGG-like)')
    points.append(f'{m.title} has {design}: {count(a["parameters"])} parameters and '
                  f'{gflops(a["forward_flops"])} GFLOPs per {a["input_shape"]} image{fc1}.')
  if len(models) >= 2:
    a, b = models[0].architecture, models[1].architecture
    points.append(f'{models[1].title} computes {b["forward_flops"] / a["forward_flops"]:.2f}x the '
                  f'FLOPs of {models[0].title} with {b["parameters"] / a["parameters"]:.2f}x its '
                  'parameters.')
  return points
