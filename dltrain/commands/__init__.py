"""The commands: each module wires the layers below into one thing a user runs (fit, cv, a sweep, eval and predict, runs, tb)."""
