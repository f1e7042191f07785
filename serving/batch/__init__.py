"""The quarterly batch job: score a dataset folder, write the run folder and the visit lists."""
