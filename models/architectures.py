"""The two architectures by name: the Trainer's custom_config says which one to fit.

A model goes by its identifier, lowercase ('sknet'), in everything a program reads: component
ids (Trainer.sknet), the config, the registry, file names. People read its title ('skNet'), as
the specification writes it: the report and the Markdown the components write use `title`.
Importing this module loads no Keras (the report reads the titles): `build` loads the builders.
"""
from typing import Callable, Dict

# identifier -> the name a reader sees.
TITLES: Dict[str, str] = {'sknet': 'skNet', 'skresnet': 'skResNet'}


def title(name: str) -> str:
  """The name a reader sees for the model `name`: its title, or `name` itself when unknown."""
  return TITLES.get(name, name)


def builders() -> Dict[str, Callable]:
  """identifier -> the function that builds the Keras model."""
  from models import sknet, skresnet  # pylint: disable=g-import-not-at-top  (Keras)
  return {'sknet': sknet.build, 'skresnet': skresnet.build}


def build(name: str, num_classes: int, image_size: int = 128, batchnorm_momentum: float = 0.9):
  known = builders()
  if name not in known:
    raise ValueError(f'unknown model {name!r}; choose one of {", ".join(known)}')
  return known[name](num_classes, image_size=image_size, batchnorm_momentum=batchnorm_momentum)
