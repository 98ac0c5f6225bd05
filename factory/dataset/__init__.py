"""The dataset folder: the interface between the factory and everything after it.

``shards/NNNNN.tar`` (webdataset: ``{key}.real.png``, ``{key}.toon.png``, ``[{key}.mask.png]``,
``{key}.json``), ``stats/NNNNN.json`` and the marker ``stats/NNNNN.done``, ``recipe.json`` and
``manifest.json``. :mod:`.layout` names the files, :mod:`.writer` writes shards, :mod:`.manifest`
seals a finished run, :mod:`.reader` reads pairs back, :mod:`.report` and :mod:`.sheets` show them.
"""
