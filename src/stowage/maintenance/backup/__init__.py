"""Backups of an installation (metadata database, local blobs, secret) and their restore.

``stowage backup DEST`` and ``stowage restore SRC`` call :func:`backup` and :func:`restore`; the layout
of a backup folder is described in ``_manifest.py`` and in ``docs/operations.md``.
"""

from __future__ import annotations

from stowage.maintenance.backup._backup import Progress, backup
from stowage.maintenance.backup._manifest import BackupError, Manifest, read_manifest
from stowage.maintenance.backup._restore import restore

__all__ = ["BackupError", "Manifest", "Progress", "backup", "read_manifest", "restore"]
