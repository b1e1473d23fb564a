"""Long-running engine jobs in a process of their own: the training process (plan, fine-tune, register)."""
