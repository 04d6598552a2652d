"""Feature names shared by the schema, Transform, the Trainer and the Evaluator."""
from components.quickdraw_data import CATEGORY_KEY, ID_KEY, IMAGE_KEY  # noqa: F401  (raw features)

# Transformed features (outputs of preprocessing_fn).
IMAGE = 'image'
LABEL = 'label'
# Vocabulary file (in the transform graph's assets) that maps category names to label ids.
CATEGORY_VOCABULARY = 'category'
