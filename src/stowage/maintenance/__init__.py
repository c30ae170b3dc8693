"""Maintenance of an installation: ``stowage.maintenance.fsck`` checks (and repairs) consistency.

Import from the submodules (``from stowage.maintenance.fsck import fsck``); the package does not
re-export ``fsck`` so that the function never shadows its module.
"""
