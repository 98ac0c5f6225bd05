"""Characters without references: the linkage does not chain, and the sprites cluster by character."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist

from curate.features import identity_features
from curate.ingest import ChainDetector, crop_square
from curate.select import LINKAGES, cluster, purity
from factory.images import read_image


def test_look_alikes_of_look_alikes_are_not_chained_into_one_character():
    # eight faces 25 degrees apart: each within 0.1 cosine distance of the next, the ends opposite
    angles = np.radians(np.arange(8) * 25.0)
    features = np.stack([np.cos(angles), np.sin(angles), np.zeros(8)], axis=1)
    chained = fcluster(linkage(pdist(features, "cosine"), "single"), t=0.12, criterion="distance")
    assert len(set(chained)) == 1  # what single linkage would do
    for method in LINKAGES:
        labels = cluster(features, 0.12, method=method)
        assert np.bincount(labels[labels >= 0]).max() <= 2
    with pytest.raises(ValueError, match="single"):
        cluster(features, 0.12, method="single")


def test_the_sprites_cluster_into_their_three_characters_with_either_linkage(assets):
    chain = ChainDetector("anime,mediapipe", cascade=assets / "models/lbpcascade_animeface.xml", min_size=24)
    paths = sorted((assets / "characters/renpy").glob("*/*.png"))
    features = np.stack([identity_features(crop_square(image, max(chain.detect(image), key=lambda d: d.size).box))
                         for image in map(read_image, paths)])
    truth = [p.parent.name for p in paths]
    for method in LINKAGES:
        labels = cluster(features, 0.12, method=method)
        assert purity(labels, truth) == 1.0 and (labels >= 0).all()
        assert sorted(np.bincount(labels).tolist()) == [2, 3, 8]
