"""The run directory: everything dq writes for a run, reads back from one, or decides by it.

One module per job (docs/design.md, "The run directory"):

- ``layout``: where everything is (file names, the directory's own name);
- ``write``: atomic writes, the one append, a full disk in one line;
- ``read``: reading files back, one line for each way a file can be broken, checked
  against checksums.json;
- ``checksums``: checksums.json, each file's sha256 recorded as it is written;
- ``record``: run.json (``RunRecord``): status and provenance;
- ``lock``: one live process per directory;
- ``claim``: a directory claimed before Hydra writes into it, given back when unstarted;
- ``resume_config`` and ``resume``: whether, from where and with which config a run
  continues (``dq.engine.checkpoint`` puts last.pt back into the loop's objects);
- ``load``: a finished run, and a teacher, as live objects (model, data).

The package spans two import layers (pyproject.toml): ``load`` and ``resume`` build or
read what the engine makes and sit above it; the rest sits below the models and data,
which read and write run files themselves. Importing ``dq.rundir`` alone loads nothing.
"""
