"""`python -m worker`: poll the queue and run experiments until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import sys

import torch

from core.db import make_engine
from core.settings import Settings, get_settings
from worker.loop import GIL_SWITCH_SECONDS, Worker


def configure_process(settings: Settings) -> None:
    """What a worker sets for its whole process: torch's intra-op threads, and how soon a
    thread running Python hands the GIL over."""
    torch.set_num_threads(settings.torch_threads)
    sys.setswitchinterval(GIL_SWITCH_SECONDS)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = get_settings()
    configure_process(settings)
    worker = Worker(make_engine(settings.database_url), settings)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stop())
    worker.run_forever()


if __name__ == "__main__":
    main()
