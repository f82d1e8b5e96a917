"""The observability lab grader: faults, telemetry, detection and conformance scoring."""
