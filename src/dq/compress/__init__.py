"""Compression of a trained model as a decision-quality experiment (issue 12): pruning
(``dq.compress.prune``), quantisation (``dq.compress.quantize``), the measures that put the
compressed model beside the original (``dq.compress.compare``), and the compressed run
directory that ``dq-compress RUN_DIR compress=...`` and ``dq-train ... compress=...`` write
(``dq.compress.step``)."""
