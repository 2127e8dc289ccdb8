"""``modelviz wandb``: a W&B run of a model from one pass (log) and what it logged (view)."""
