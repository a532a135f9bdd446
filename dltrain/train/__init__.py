"""The training engine and what it trains with: one epoch loop over a population of members
(engine.py, member.py, population.py), the parts built from the settings (build.py: objective,
model, optimizer, schedule), early stopping, the run-folder writer, metrics, loggers and the
speed, thread and data-parallel settings."""
