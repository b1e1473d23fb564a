"""The U-Net, its model card and checkpoints, and the preprocessing the card describes."""
