"""`python -m worker`: poll the queue and run experiments until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal

import torch

from core.db import make_engine
from core.settings import get_settings
from worker.loop import Worker


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = get_settings()
    torch.set_num_threads(settings.torch_threads)
    worker = Worker(make_engine(settings.database_url), settings)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stop())
    worker.run_forever()


if __name__ == "__main__":
    main()
