"""The data stage: collect, clean, deduplicate, decontaminate, tag and shard source code.

``geex.data.pipeline`` builds the pipeline from datatrove blocks (``readers``, ``filters``,
``pii``, ``decontaminate``, ``dedup``, ``writer``); ``geex.data.shards`` is the format
``geex train`` reads.
"""
