"""Services around a running pipeline: metrics and health (an observer), hot reload of
the config, ``doctor``'s checks, and the TensorRT engine cache (``engines``).

May import: pipeline, stages, runtime and below; never cli or bench.
"""
