"""stdout the way the reference's C stdio writes it.

When stdout is not a terminal, glibc buffers it in blocks of the file's preferred size
(``st_blksize``) and writes the last partial block at exit — after the summary line the
tool prints to stderr. Scripts that merge both streams (``2>&1``) see that order, so
:class:`Stdout` writes whole blocks as glibc does (a block once more data follows it)
and keeps the rest until :meth:`Stdout.finish`. Event mode flushes after every line (``fflush``), as does a
terminal (line buffering).

Both streams carry the bytes the user gave: command-line words (and ``-R`` file words) are
text decoded as Python decodes ``argv`` (the file system encoding with
``surrogateescape``), and :func:`to_bytes` encodes text back the same way, so that a word
that is not valid in the locale's encoding comes out byte for byte whatever the locale,
``PYTHONIOENCODING`` or ``PYTHONUTF8`` say.
"""
from __future__ import annotations

import os
import sys

_ENCODING = sys.getfilesystemencoding()


def to_bytes(text: str) -> bytes:
    """The bytes ``text`` stands for (the reverse of Python's decoding of ``argv``)."""
    try:
        return text.encode(_ENCODING, "surrogateescape")
    except UnicodeEncodeError:  # text from elsewhere that the locale cannot encode
        return text.encode("utf-8", "surrogateescape" if _escapes_only(text) else "backslashreplace")


def _escapes_only(text: str) -> bool:
    """Whether every surrogate in ``text`` is a ``surrogateescape`` byte (U+DC80..U+DCFF)."""
    return all(not 0xD800 <= ord(c) <= 0xDFFF or 0xDC80 <= ord(c) <= 0xDCFF for c in text)


class Stderr:
    """stderr as stdio treats it: unbuffered, as bytes (:func:`to_bytes`), and a failed
    write (descriptor 2 closed, a full disk, a reader gone with SIGPIPE ignored) loses the
    text without changing what the program does or its status. ``stream``: a text stream
    to write to instead of descriptor 2 (tests, the fixture replay); ``closed``: the
    program started with descriptor 2 closed (it may since belong to a socket)."""

    def __init__(self, stream=None, *, closed: bool = False) -> None:
        self.stream = stream
        self.closed = closed

    def write(self, text: str) -> None:
        if self.closed:
            return
        try:
            if self.stream is not None:
                self.stream.write(text)
                self.stream.flush()
                return
            view = memoryview(to_bytes(text))
            while view:
                view = view[os.write(2, view):]
        except (OSError, ValueError):
            pass

    def flush(self) -> None:
        if self.stream is not None and not self.closed:
            try:
                self.stream.flush()
            except (OSError, ValueError):
                pass


class Stdout:
    """A byte-exact, block-buffered stdout (``write`` takes text)."""

    def __init__(self, fd: int | None = None) -> None:
        if fd is None:
            try:
                fd = sys.stdout.fileno()
            except (AttributeError, OSError, ValueError):
                fd = 1
        self.fd = fd
        try:
            st = os.fstat(fd)
            self.block = st.st_blksize or 4096
        except OSError:
            self.block = 4096
        try:
            self.line_buffered = os.isatty(fd)
        except OSError:
            self.line_buffered = False
        self.buf = bytearray()
        self.broken = False

    def write(self, text: str) -> None:
        self.buf += to_bytes(text)
        if self.line_buffered:
            self.flush()
        elif len(self.buf) > self.block:
            # glibc fills the buffer and writes it out only when more data comes: after
            # lines shorter than a block it holds 1..block bytes, never 0 (a full block
            # stays buffered until the next line, or exit)
            keep = (len(self.buf) - 1) % self.block + 1
            self._write(len(self.buf) - keep)

    def flush(self) -> None:
        """Write everything buffered (``fflush``)."""
        self._write(len(self.buf))

    def finish(self) -> None:
        """At exit: the partial last block."""
        self.flush()

    def _write(self, n: int) -> None:
        if self.broken or n == 0:
            del self.buf[:n]
            return
        view = memoryview(self.buf)[:n]
        try:
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
        except BrokenPipeError:
            self.broken = True
            raise
        except OSError:
            # like stdio: a failed write (a full disk, /dev/full, EIO) loses the data and
            # sets the stream's error flag; the program goes on and its exit status stays
            self.broken = True
        finally:
            view.release()
            del self.buf[:n]
