"""The S3 blob store's settings: one setting chooses it, the rest are validated with clear messages only
when it is chosen, the secret is redacted, and ``create_blob_store`` builds what they describe."""

from __future__ import annotations

import pytest

from stowage.blobs import LocalBlobStore, create_blob_store
from stowage.blobs.s3 import S3BlobStore
from stowage.config import REDACTED, ConfigError, load_settings, redacted

S3 = {
    "STOWAGE_BLOB_STORE": "s3",
    "STOWAGE_S3_BUCKET": "my-bucket",
    "STOWAGE_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
    "STOWAGE_S3_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "STOWAGE_S3_SECRET_ACCESS_KEY": "a-secret-that-must-never-show",
}


def test_the_local_folder_stays_the_default_and_ignores_s3_settings() -> None:
    settings = load_settings({"STOWAGE_S3_PART_SIZE": "1"})  # not checked: the S3 store is not in use
    assert settings.blob_store == "local"
    assert isinstance(create_blob_store(settings), LocalBlobStore)


def test_one_setting_chooses_the_s3_store() -> None:
    settings = load_settings({**S3, "STOWAGE_S3_PREFIX": "stowage/", "STOWAGE_S3_PART_SIZE": str(16 * 1024**2)})
    store = create_blob_store(settings)
    assert isinstance(store, S3BlobStore)
    assert store.bucket == "my-bucket"
    assert store.prefix == "stowage/"
    assert store.part_size == 16 * 1024**2
    assert store.location.endpoint_url == "http://127.0.0.1:9000"
    assert "a-secret" not in store.describe()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"STOWAGE_S3_BUCKET": ""}, r"STOWAGE_S3_BUCKET \(s3_bucket\): must name the bucket"),
        ({"STOWAGE_S3_BUCKET": "Not_A_Bucket"}, r"s3_bucket\): must be a bucket name"),
        ({"STOWAGE_S3_ENDPOINT_URL": "127.0.0.1:9000"}, r"s3_endpoint_url\): must be an http\(s\) URL"),
        ({"STOWAGE_S3_PART_SIZE": str(1024**2)}, r"s3_part_size\): must be between 5 MiB"),
        ({"STOWAGE_S3_PREFIX": "stowage"}, r"s3_prefix\): must be empty or a key prefix ending in"),
        ({"STOWAGE_S3_PREFIX": "/stowage/"}, r"s3_prefix\)"),
        ({"STOWAGE_S3_PRESIGN_SECONDS": "0"}, r"s3_presign_seconds\): must be between 1 second and 7 days"),
        ({"STOWAGE_S3_PRESIGN_SECONDS": str(8 * 86400)}, r"s3_presign_seconds\)"),
        ({"STOWAGE_S3_SECRET_ACCESS_KEY": ""}, r"s3_secret_access_key\): must be set together"),
        ({"STOWAGE_S3_ACCESS_KEY_ID": ""}, r"s3_access_key_id\): must be set together"),
        ({"STOWAGE_BLOB_STORE": "gcs"}, r"STOWAGE_BLOB_STORE \(blob_store\): must be one of local, s3"),
    ],
)
def test_bad_s3_settings_name_the_setting_and_what_is_allowed(changes: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings({**S3, **changes})
    assert "a-secret-that-must-never-show" not in str(caught.value)


def test_the_aws_credential_chain_is_used_when_no_keys_are_set() -> None:
    settings = load_settings({"STOWAGE_BLOB_STORE": "s3", "STOWAGE_S3_BUCKET": "my-bucket"})
    store = create_blob_store(settings)
    assert isinstance(store, S3BlobStore)
    assert store.location.access_key_id is None
    assert store.location.endpoint_url is None


def test_the_secret_access_key_is_redacted() -> None:
    shown = redacted(load_settings(S3))
    assert shown["s3_secret_access_key"] == REDACTED
    assert shown["s3_access_key_id"] == "AKIAEXAMPLE"  # an identifier, like a user name
