"""Removing blob files from a local store without racing a deduplicating upload: moved to
``stowage.blobs.local_removal`` (the local store's ``remove_if_old``); re-exported for existing callers."""

from __future__ import annotations

from stowage.blobs.local_removal import file_mtime, quarantine, remove_if_old, restore, unlink_quietly

__all__ = ["file_mtime", "quarantine", "remove_if_old", "restore", "unlink_quietly"]
