"""Reports of a run: one model of the run, and every format written from it.

Pure: nothing here reads a file, runs a command or touches the kernel. `model` holds
the model and the one place that decides a case's outcome from pytest's reports;
`ktap`, `kcidb` and `html` are functions of the model; `compare` and `lava` work on
finished runs read back into the same model. The I/O around them lives in
`harness.session.report_plugin` (collecting a live session, writing the files) and in
`harness.cli.compare` and `harness.cli.lava`.
"""
