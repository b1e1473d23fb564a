"""Fine-tuning and first-model training: sampling, augmentation, losses, validation, the training process."""
