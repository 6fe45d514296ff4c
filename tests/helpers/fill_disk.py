"""A callback that fills the disk of a folder at the start of an epoch, as another process
writing there would: loaded by ``attnlab train`` processes in tests
(``+callbacks.fill._target_=helpers.fill_disk.FillDisk``, tests/ on PYTHONPATH)."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import lightning.pytorch as L


class FillDisk(L.Callback):
    """At the start of epoch ``epoch``, write ``folder``/filler until its disk is full."""

    def __init__(self, folder: str, epoch: int = 1):
        self.folder, self.epoch = Path(folder), epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module) -> None:
        if trainer.current_epoch != self.epoch:
            return
        with open(self.folder / "filler", "wb") as filler:
            try:
                filler.write(b"\0" * shutil.disk_usage(self.folder).free)
                filler.flush()
            except OSError as error:  # the last block does not fit: the disk is full now
                if error.errno != errno.ENOSPC:
                    raise
