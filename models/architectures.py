"""The two architectures by name: the Trainer's custom_config says which one to fit."""
from typing import Callable, Dict

from models import sknet, skresnet

BUILDERS: Dict[str, Callable] = {'sknet': sknet.build, 'skresnet': skresnet.build}


def build(name: str, num_classes: int, image_size: int = 128, batchnorm_momentum: float = 0.9):
  if name not in BUILDERS:
    raise ValueError(f'unknown model {name!r}; choose one of {", ".join(BUILDERS)}')
  return BUILDERS[name](num_classes, image_size=image_size, batchnorm_momentum=batchnorm_momentum)
