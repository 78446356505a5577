"""The machine a number was measured on, in one line, for every report and benchmark."""

from __future__ import annotations

import platform

import torch


def describe(device: str = "cpu") -> str:
    """CPU model, torch threads and OS, and the GPU on a CUDA device.

    >>> describe()  # e.g. 'AMD EPYC, 2 torch threads, Linux'
    """
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo
                       if line.startswith("model name"))  # fmt: skip
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    threads = torch.get_num_threads()
    text = f"{cpu}, {threads} torch thread{'s' * (threads != 1)}, {platform.system()}"
    if str(device).startswith("cuda"):
        text += f", GPU {torch.cuda.get_device_name(torch.device(device))}"
    return text
