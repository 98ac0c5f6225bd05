"""Face geometry: landmark correspondences, the webtoon profile, and warps (imports nothing of factory or distill)."""
