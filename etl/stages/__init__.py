"""Cross-source stages, in pipeline order: normalise → exact_dedup → near_dedup → decontaminate → langid."""
