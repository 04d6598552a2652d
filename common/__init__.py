"""General utilities at the bottom of the house: the progress display and the Keras-2 switch.
Imports no other package of the project and no TensorFlow at import time."""
