"""Compression of a finished run (pruning, quantisation, distillation) and the measures that put the compressed model beside its original."""
