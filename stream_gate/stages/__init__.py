"""The pipeline's stages, one package (or module) each, in pipeline order:

decode -> batch -> track (detect + refine inside) -> gate -> align_score -> select -> publish

Each stage's ``__init__`` has a Protocol (what the pipeline asks of it) and a
``build_*()`` that picks its backend; stages do not import each other, with two declared
exceptions (refine uses detect's codec; track runs detect and refine), checked by
import-linter (``make lint``).
"""
