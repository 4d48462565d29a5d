"""The CPU training allocator setting: glibc keeps freed memory, and a step's numbers do not change."""

from __future__ import annotations

import subprocess
import sys

import pytest

from svllreid.training import cpu_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_keep_freed_memory_applies_once_and_stops_refaulting_freed_blocks():
    # In a fresh process: the setting is global to the process and cannot be undone.
    code = """
import resource, torch
from svllreid.training.cpu_memory import keep_freed_memory

def faults_of_repeated_blocks():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        block = torch.ones(4 << 20)  # 16 MiB, above glibc's initial mmap threshold
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

torch.set_num_threads(1)
default = faults_of_repeated_blocks()
assert keep_freed_memory() is True and keep_freed_memory() is True
faults_of_repeated_blocks()  # the heap grows once
kept = faults_of_repeated_blocks()
print(default, kept)
assert kept < default / 4, (default, kept)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_keep_freed_memory_is_a_no_op_off_linux(monkeypatch):
    monkeypatch.setattr(cpu_memory, "_applied", None)
    monkeypatch.setattr(cpu_memory.sys, "platform", "darwin")
    assert cpu_memory.keep_freed_memory() is False
