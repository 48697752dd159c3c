"""Shared helpers of the test suites: private network namespaces, the reference tool's
output parsers, the FTP-helper scenario and the kernel message capture script."""
