"""RegistryPusher: TFX's Pusher contract, publishing a blessed model with its model card and
search gallery as a new registry version (component.py, executor.py, model_card.py)."""
