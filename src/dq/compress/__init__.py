"""Compression of a finished run: pruning, quantisation and distillation, measured for what they change."""
