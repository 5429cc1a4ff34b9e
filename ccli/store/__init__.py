"""HDF5 artifact store: schemas, content keys, atomic writes, locks, cache management."""

from ccli.store.artifact import ArtifactWriter
from ccli.store.digests import content_key
from ccli.store.reader import Artifact, open_artifact
from ccli.store.verify import is_valid_artifact, verify_artifact
from ccli.store.cache import cache_path, cache_root, get_or_compute, key_lock, output_path
from ccli.store.schema import KINDS, SCHEMA_VERSION

__all__ = [
    "Artifact",
    "ArtifactWriter",
    "KINDS",
    "SCHEMA_VERSION",
    "cache_path",
    "cache_root",
    "content_key",
    "get_or_compute",
    "is_valid_artifact",
    "key_lock",
    "open_artifact",
    "output_path",
    "verify_artifact",
]
