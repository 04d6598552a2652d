"""The pipeline's custom TFX components, one package per stage (example_gen, evaluator,
model_comparison, pusher), each with its component and its executor apart, as TFX lays out its
own; the artifact types (artifact_types.py) and resolvers (resolvers.py) beside them."""
