"""What multirun needs beyond Hydra: the failure-tolerant job, skip/resume/rerun of a
re-run sweep, sweep.json and jobs.csv (then dq.report's summary at the root), and the Optuna sweeper behind
``hparams_search=<name>``. Nothing here is imported by a single run."""
