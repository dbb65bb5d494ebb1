"""The pipeline: the stages composed (graph.py), run (loop.py) and watched (observe.py).

Start with graph.py: it builds every stage in pipeline order, with the backend chosen
once. streams.py holds each stream's state; stills.py runs the same stages on photos.

May import: stages, runtime, geometry, config, errors, log, types; never cli, bench or
service (they use the pipeline, not the other way round).
"""
