"""Measurement: suites, probes, metrics and the runners (benchmark, calibration, scale, ...)."""
