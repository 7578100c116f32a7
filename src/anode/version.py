"""anode's version, and the version of its numerics (imports nothing, so every module may import it)."""

__all__ = ["NUMERICS_VERSION", "__version__"]

#: The release.
__version__ = "0.2.0"

#: The last release that changed what a run computes. Run fingerprints record it (as their
#: `code.anode_version`), so results made by an older release with the same numerics stay valid and
#: resume; bump it with any change that alters results, and old runs are then refused.
NUMERICS_VERSION = "0.1.0"
