"""ember.nn.parallel: DistributedDataParallel (one process per replica, ember.distributed underneath)
and DataParallel (one process, several GPUs)."""
from .data_parallel import DataParallel
from .distributed import DistributedDataParallel

__all__ = ["DataParallel", "DistributedDataParallel"]
