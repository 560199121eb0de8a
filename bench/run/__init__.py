"""Running experiments: the frozen spec, splits, the stage cache, the runner, a run's output files, grids."""
