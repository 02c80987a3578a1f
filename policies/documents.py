"""Claim documents: PDF or images, accepted only when their first bytes are what their name
says they are, within a size limit, stored with a SHA-256 (docs/claims.md)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from glucover.errors import UserError

MAX_BYTES = 10 * 1024 * 1024  # a phone photo or a scanned report; larger is refused
# Media type by file name ending, and the bytes every such file starts with.
MEDIA_TYPES = {".pdf": "application/pdf", ".png": "image/png", ".jpg": "image/jpeg",
               ".jpeg": "image/jpeg"}
MAGIC = {"application/pdf": b"%PDF-", "image/png": b"\x89PNG\r\n\x1a\n",
         "image/jpeg": b"\xff\xd8\xff"}


@dataclass(frozen=True)
class Document:
    filename: str
    media_type: str
    content: bytes

    @property
    def size_bytes(self) -> int:
        return len(self.content)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def checked(filename: str, content: bytes) -> Document:
    """A document from its name and bytes, or a UserError saying what is wrong with it."""
    name = Path(filename).name
    media_type = MEDIA_TYPES.get(Path(name).suffix.lower())
    if media_type is None:
        raise UserError(f"{name}: a document must be a PDF, PNG or JPEG file "
                        f"({', '.join(MEDIA_TYPES)})")
    if not content:
        raise UserError(f"{name} is empty")
    if len(content) > MAX_BYTES:
        raise UserError(f"{name} is {len(content) / 2**20:.1f} MiB; the limit is "
                        f"{MAX_BYTES / 2**20:.0f} MiB")
    if not content.startswith(MAGIC[media_type]):
        raise UserError(f"{name} is not a {media_type} file: its content does not start as "
                        "one does")
    return Document(name, media_type, content)


def read(path: str) -> Document:
    file = Path(path)
    if not file.is_file():
        raise UserError(f"document {path} does not exist")
    with file.open("rb") as f:
        content = f.read(MAX_BYTES + 1)
    return checked(file.name, content)
