"""Files under instance/ are the service's own: no other user may read them (issue 13, item 17)."""
from __future__ import annotations

import io
import os
import stat

from registry.complaints.service import store_attachment
from registry.infra.settings import finish_settings, load_settings

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 64


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_instance_and_files_folders_and_what_is_created_in_them(tmp_path):
    previous = os.umask(0o022)
    try:
        instance = tmp_path / "instance"
        instance.mkdir(mode=0o755)
        old = instance / "registry.db"
        old.write_bytes(b"")
        os.chmod(instance, 0o755)
        os.chmod(old, 0o644)  # left world-readable by an older version
        settings = finish_settings(load_settings({"INSTANCE_DIR": str(instance)}))
        assert mode(instance) == 0o700 and mode(settings["FILES_DIR"]) == 0o700
        assert mode(instance / "secret_key") == 0o600
        # the offline snapshot's own signing key: made once, private, the same on the next start
        assert mode(instance / "snapshot_signing_key.pem") == 0o600
        assert settings["SNAPSHOT_SIGNING_KEY"].startswith("-----BEGIN PRIVATE KEY-----")
        assert finish_settings(load_settings({"INSTANCE_DIR": str(instance)}))["SNAPSHOT_SIGNING_KEY"] == \
            settings["SNAPSHOT_SIGNING_KEY"]
        stored = store_attachment(io.BytesIO(PNG), tmp_path / "instance" / "files")
        created = [p for p in (instance / "files").rglob("*") if p.is_file()]
        assert created and all(mode(p) == 0o600 for p in created), stored
        assert all(mode(p) == 0o700 for p in (instance / "files").rglob("*") if p.is_dir())
        (instance / "new.db").write_bytes(b"")  # anything the process makes from now on
        assert mode(instance / "new.db") == 0o600
    finally:
        os.umask(previous)
