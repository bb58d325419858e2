"""Receive a multipart/form-data upload as a stream: the file goes to disk chunk by chunk, hashed on the way.

Starlette's own form parser would take the whole request before a route sees it; here the size limit
holds while the bytes arrive (413 as soon as they pass it), the sha256 is computed while streaming, and a
body that ends before its closing boundary (a dropped connection, a truncated request) is refused with
nothing kept.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from nas.errors import PayloadTooLargeError, SpecError

MAX_FIELD_BYTES = 4096
FORM_OVERHEAD_BYTES = 64 * 1024  # boundaries, part headers and the small fields around the file


@dataclass
class ReceivedUpload:
    fields: dict[str, str]
    filename: str
    temp_path: Path
    sha256: str
    size_bytes: int


@dataclass
class _State:
    file_field: str
    max_bytes: int
    fields: dict[str, bytearray] = field(default_factory=dict)
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    headers: dict[str, str] = field(default_factory=dict)
    current: str | None = None
    in_file: bool = False
    filename: str = ""
    files_seen: int = 0
    pending: bytearray = field(default_factory=bytearray)
    digest: Any = field(default_factory=hashlib.sha256)
    size: int = 0
    ended: bool = False
    error: Exception | None = None


def _callbacks(st: _State) -> dict[str, Any]:
    def on_part_begin() -> None:
        st.headers, st.current, st.in_file = {}, None, False

    def on_header_field(data: bytes, start: int, end: int) -> None:
        st.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        st.header_value += data[start:end]

    def on_header_end() -> None:
        st.headers[st.header_field.decode("latin-1").lower()] = st.header_value.decode("latin-1")
        st.header_field.clear()
        st.header_value.clear()

    def on_headers_finished() -> None:
        _, options = parse_options_header(st.headers.get("content-disposition", ""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        st.current = name
        if name == st.file_field:
            st.files_seen += 1
            if st.files_seen > 1:
                st.error = SpecError(f"{st.file_field}: send one file per upload")
            st.in_file = True
            st.filename = Path(options.get(b"filename", b"").decode("utf-8", "replace")).name[:200]
        else:
            st.fields.setdefault(name, bytearray())

    def on_part_data(data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if st.in_file:
            st.size += len(chunk)
            if st.size > st.max_bytes:
                st.error = st.error or PayloadTooLargeError(
                    f"file: over the upload limit of {st.max_bytes} bytes; send a smaller file (the server's "
                    "admin sets HWNAS_MAX_UPLOAD_BYTES)")
                return
            st.digest.update(chunk)
            st.pending += chunk
        elif st.current is not None:
            st.fields[st.current] += chunk
            if len(st.fields[st.current]) > MAX_FIELD_BYTES:
                st.error = st.error or SpecError(f"{st.current}: a form field of at most {MAX_FIELD_BYTES} bytes")

    def on_end() -> None:
        st.ended = True

    return {"on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
            "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data, "on_end": on_end}


FORM_FIX = "send multipart/form-data with the fields file (the data), name and format (text, tsv, csv or jsonl)"


async def receive_upload(request: Request, *, folder: Path, max_bytes: int, file_field: str = "file") -> ReceivedUpload:
    """Stream the request's one file into a new file under `folder`; the other fields as text.

    Raises SpecError (not a form, a missing file, a truncated body) or PayloadTooLargeError; nothing stays
    on disk when it raises.
    """
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise SpecError(f"body: not a multipart/form-data request; {FORM_FIX}")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes + FORM_OVERHEAD_BYTES:
        raise PayloadTooLargeError(f"file: the request ({length} bytes) is over the upload limit of {max_bytes} "
                                   "bytes; send a smaller file (the server's admin sets HWNAS_MAX_UPLOAD_BYTES)")
    st = _State(file_field=file_field, max_bytes=max_bytes)
    parser = MultipartParser(boundary, _callbacks(st))
    folder.mkdir(parents=True, exist_ok=True)
    temp_path = folder / f"upload-{secrets.token_hex(16)}.part"
    handle = await anyio.to_thread.run_sync(temp_path.open, "wb")
    try:
        try:
            async for chunk in request.stream():
                parser.write(chunk)
                if st.error is not None:
                    raise st.error
                if st.pending:
                    data = bytes(st.pending)
                    st.pending.clear()
                    await anyio.to_thread.run_sync(handle.write, data)
            parser.finalize()
        except ClientDisconnect:
            raise SpecError("body: the connection closed before the upload ended; nothing was stored, send it "
                            "again") from None
        except ValueError as exc:  # python-multipart's parse errors
            raise SpecError(f"body: malformed multipart/form-data ({exc}); {FORM_FIX}") from None
        if st.error is not None:
            raise st.error
        if not st.ended:
            raise SpecError("body: the upload ended before its closing boundary (truncated); nothing was stored, "
                            "send it again")
        if st.files_seen == 0:
            raise SpecError(f"{file_field}: missing; {FORM_FIX}")
        await anyio.to_thread.run_sync(handle.close)
    except BaseException:
        handle.close()
        temp_path.unlink(missing_ok=True)
        raise
    fields = {k: v.decode("utf-8", "replace") for k, v in st.fields.items()}
    return ReceivedUpload(fields=fields, filename=st.filename, temp_path=temp_path, sha256=st.digest.hexdigest(),
                          size_bytes=st.size)
