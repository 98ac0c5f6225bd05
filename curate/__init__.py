"""Curation: crawled comic pages and actor photos become clean, per-character face sets.

ingest (slice, detect, merge, crop) -> superres (small crops) -> filters (reasons) -> features ->
select (references or clusters) / actors (majority identity) -> review (HTML, overrides) -> store
(folder tree, manifest, ClearML dataset). Nothing here imports distill or casting.
"""
