"""Odd error codes in the kernel's NLMSG_ERROR replies, the reference against ours.

A small LD_PRELOAD library (compiled here with ``cc``) rewrites every ACK a process reads
from a netlink socket into an error with the code in ``ERRSHIM_CODE``; both programs run
under it against the same kernel: a positive code is taken as the errno itself and
``INT_MIN`` stays ``INT_MIN`` (libmnl's reading; tests/unit/test_error_codes.py crafts the
same replies with nfnl.replay)."""
from __future__ import annotations

import subprocess

import pytest

from harness import assert_same

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <linux/netlink.h>

static void rewrite(int fd, void *buf, ssize_t len) {
    const char *v = getenv("ERRSHIM_CODE");
    int domain = 0;
    socklen_t sl = sizeof(domain);
    if (!v || len <= 0 || getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &sl) != 0
        || domain != AF_NETLINK)
        return;
    for (struct nlmsghdr *h = buf; NLMSG_OK(h, (unsigned)len); h = NLMSG_NEXT(h, len)) {
        struct nlmsgerr *e = NLMSG_DATA(h);
        if (h->nlmsg_type == NLMSG_ERROR && e->error == 0)
            e->error = (int)strtol(v, NULL, 0);
    }
}

#define REAL(name, ...) static ssize_t (*real)(__VA_ARGS__); if (!real) real = dlsym(RTLD_NEXT, name)

ssize_t recvmsg(int fd, struct msghdr *m, int flags) {
    REAL("recvmsg", int, struct msghdr *, int);
    ssize_t n = real(fd, m, flags);
    if (n > 0 && m->msg_iovlen > 0) rewrite(fd, m->msg_iov[0].iov_base, n);
    return n;
}

ssize_t recvfrom(int fd, void *b, size_t len, int flags, struct sockaddr *a, socklen_t *al) {
    REAL("recvfrom", int, void *, size_t, int, struct sockaddr *, socklen_t *);
    ssize_t n = real(fd, b, len, flags, a, al);
    rewrite(fd, b, n);
    return n;
}

ssize_t recv(int fd, void *b, size_t len, int flags) {
    REAL("recv", int, void *, size_t, int);
    ssize_t n = real(fd, b, len, flags);
    rewrite(fd, b, n);
    return n;
}
"""

CODES = ["7", "-7", "-2147483648", "2147483647", "-4095", "-22"]
LINES = [["-F"], ["-I", "-s", "192.0.2.1", "-d", "192.0.2.2", "-p", "udp", "--sport", "1",
                  "--dport", "2", "-t", "30"]]


@pytest.fixture(scope="module")
def shim(workdir) -> str:
    src = workdir / "errshim.c"
    src.write_text(SHIM)
    lib = workdir / "errshim.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(lib), str(src), "-ldl"],
                   check=True)
    return str(lib)


@pytest.mark.parametrize("line", LINES, ids=["-F", "-I"])
@pytest.mark.parametrize("code", CODES)
def test_odd_error_codes(module_ns, shim: str, code: str, line: list[str]) -> None:
    _, runner = module_ns
    env = {"LD_PRELOAD": shim, "ERRSHIM_CODE": code}
    runner.ref("-F")  # the same (empty) table for both: -I creates the entry anyway
    ref = runner.run("ref", line, env=env)
    runner.ref("-F")
    ours = runner.run("ours", line, env=env, exec_ours=True)
    assert ref.status == 1 and b"Operation failed: " in ref.err
    assert_same(ref, ours)
