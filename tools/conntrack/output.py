"""stdout the way the reference's C stdio writes it.

When stdout is not a terminal, glibc buffers it in blocks of the file's preferred size
(``st_blksize``) and writes the last partial block at exit — after the summary line the
tool prints to stderr. Scripts that merge both streams (``2>&1``) see that order, so
:class:`Stdout` writes whole blocks as glibc does (a block once more data follows it)
and keeps the rest until :meth:`Stdout.finish`. Event mode flushes after every line (``fflush``), as does a
terminal (line buffering).
"""
from __future__ import annotations

import os
import sys


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
        self.buf += text.encode("utf8", "surrogateescape")
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
