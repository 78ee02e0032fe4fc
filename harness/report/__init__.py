"""Reports of a run: one model of the run, and every format written from it.

`model` holds the model and the one place that decides a case's outcome from pytest's
reports; `plugin` collects it in the xdist controller (or the only process) and writes
the formats at session end; `ktap`, `kcidb` and `html` are pure functions of the model;
`compare` and `lava` read a finished run's results.jsonl back into the same model.
"""
