"""The run screen's regions, each drawn from the view model and nothing else."""
