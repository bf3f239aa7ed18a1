"""The composition: every long-lived object, built once from settings."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.store.attachments import AttachmentLimits, Attachments
from app.store.files import DatabaseFileStorage, FileStorage
from app.store.s3 import S3Config, S3FileStorage
from app.store.store import SQLAlchemyStore
from app.store.urls import signer_from_settings


def build_stores(settings: Settings, engine: AsyncEngine) -> tuple[SQLAlchemyStore, Attachments]:
    """The thread store and the attachment store, sharing file storage and URL signer."""
    files: FileStorage = (
        S3FileStorage(S3Config.from_settings(settings))
        if settings.attachment_storage == "s3"
        else DatabaseFileStorage(engine)
    )
    urls = signer_from_settings(settings)
    store = SQLAlchemyStore(engine, files=files, attachment_urls=urls)
    attachments = Attachments(store, files, urls, AttachmentLimits.from_settings(settings))
    return store, attachments
