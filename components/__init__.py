import os

# Keras 2 (tf_keras) for the models and for TFT's Keras layer; must precede the first
# TensorFlow import, so every package of the project sets it on import.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
