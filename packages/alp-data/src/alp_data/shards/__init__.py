"""Tar shards: written by ``alp data shard``, streamed by the ``shards`` data source.

- :mod:`~alp_data.shards.index`: the shard layout and its ``index.json``;
- :mod:`~alp_data.shards.writer`: manifest -> shards, in parallel workers;
- :mod:`~alp_data.shards.plan`: which clips every rank and worker reads, in which batches;
- :mod:`~alp_data.shards.stream`: the resumable streaming dataset and its loader;
- :mod:`~alp_data.shards.source`: the registered ``shards`` data source.
"""
