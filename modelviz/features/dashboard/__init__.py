"""What a dashboard shows (TensorBoard, W&B, Visdom), decided in one place from one pass."""
