"""Feature names shared by ExampleGen, the schema, Transform, the Trainer and the Evaluator."""

# Raw features of the emitted tf.Examples; schema/schema.pbtxt lists the same.
IMAGE_KEY = 'image_png'
CATEGORY_KEY = 'category'
ID_KEY = 'drawing_id'

# Transformed features (outputs of preprocessing_fn).
IMAGE = 'image'
LABEL = 'label'
# Vocabulary file (in the transform graph's assets) that maps category names to label ids.
CATEGORY_VOCABULARY = 'category'
