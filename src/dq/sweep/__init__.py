"""What multirun needs beyond Hydra: the failure-tolerant job, skip/resume/rerun of a
re-run sweep, sweep.json and summary.csv, and the Optuna sweeper behind
``hparams_search=<name>``. Nothing here is imported by a single run."""
