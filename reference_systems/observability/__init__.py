"""The reference system under observation (backend, fault injector) and the reference instrumentation and detectors."""
