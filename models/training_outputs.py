"""The files a training run leaves beside its model, named once for the Trainer that writes
them and the Pusher and report that read them (without importing the Trainer's TFX code)."""

# In the model_run folder: the per-epoch history (loss, accuracy, learning rate, images).
HISTORY_FILE = 'history.json'
# In the SavedModel's assets.extra: how the model was trained (precision, budget, steps).
TRAINING_RUN_FILE = 'training_run.json'
TRAINING_RUN_KEYS = ('precision', 'precision_reason', 'machine', 'epochs', 'time_budget_minutes',
                     'stopped_by_time_budget', 'budget', 'steps', 'images_seen', 'epochs_reached',
                     'training_seconds', 'resumed_from_step', 'batch_size', 'replicas',
                     'optimizer', 'lr_schedule', 'peak_learning_rate', 'warmup_fraction',
                     'last_learning_rate', 'label_smoothing')
