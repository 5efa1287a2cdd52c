"""The study engine: the loop that asks, schedules, runs and records, and the executors trials run on."""
