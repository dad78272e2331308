"""Networks: the U-Net backbone and the heads methods attach to it."""
