"""The Bloom index of registered report numbers: sharded pybloom-live layouts in local files or Redis."""
from registry.bloom.index import BloomConfig, BloomIndex, BloomStoreError, Writer, open_bloom_index
from registry.bloom.layout import Layout, Pointer, bits_from_bloomfilter, bloomfilter_from_bits
from registry.bloom.stores import LocalStore, RebuildInProgress, RedisStore, ShardStore

__all__ = [
    "BloomConfig", "BloomIndex", "BloomStoreError", "Layout", "LocalStore", "Pointer", "RebuildInProgress",
    "RedisStore", "ShardStore", "Writer", "bits_from_bloomfilter", "bloomfilter_from_bits", "open_bloom_index",
]
