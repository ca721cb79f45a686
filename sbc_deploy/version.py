"""The package's version, on the ground floor so that any module may record it (exports, the
run's manifest, ``--version``) without importing the package's face."""

__version__ = "0.1.0"
