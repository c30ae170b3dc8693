"""The objects one application instance shares between requests, built in its lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stowage.accounts.services import AccountServices, PresignService
from stowage.config import Settings
from stowage.db.engine import Database
from stowage.files.services import FileServices
from stowage.media.services import ThumbnailService
from stowage.observability.metrics import Metrics
from stowage.sharing.services import SharingServices
from stowage.system.service import SystemService
from stowage.uploads.services import UploadServices


@dataclass(slots=True)
class Runtime:
    settings: Settings
    data_dir: Path
    secret_key: str
    database: Database
    metrics: Metrics | None
    system: SystemService
    accounts: AccountServices
    files: FileServices
    presign: PresignService
    sharing: SharingServices
    uploads: UploadServices
    media: ThumbnailService
