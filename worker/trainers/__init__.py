"""The trainers behind `worker.trainers.base.Trainer`, picked by `worker.trainers.registry`."""
