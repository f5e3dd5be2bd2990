"""Peak resident memory of this process, for benchmarks that run each case in a fresh process."""

from __future__ import annotations


def rss_kib(field: str) -> int:
    """A memory field of /proc/self/status in KiB: ``"VmRSS"`` now, ``"VmHWM"`` the peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def reset_peak() -> None:
    """Reset the peak (VmHWM) to the current resident size, so a later peak measures what follows."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
