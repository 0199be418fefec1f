"""ember.autograd.profiler: the older spelling of ember.profiler (torch.autograd.profiler).

    with ember.autograd.profiler.profile(record_shapes=True) as prof:
        model(x)
    print(prof.key_averages().table(sort_by="self_cpu_time_total"))"""
from __future__ import annotations

from ..profiler import EventList, record_function  # noqa: F401
from ..profiler import profile as _profile


class profile(_profile):
    """torch.autograd.profiler.profile: `enabled` comes first, the device switches (use_cuda,
    use_device, use_kineto, use_cpu) are accepted (ember records host times), and the results are
    also reachable as prof.function_events / prof.table() / prof.self_cpu_time_total."""

    def __init__(self, enabled: bool = True, *, use_cuda: bool = False, use_device=None, record_shapes: bool = False,
                 with_flops: bool = False, profile_memory: bool = False, with_stack: bool = False,
                 with_modules: bool = False, use_kineto: bool = True, use_cpu: bool = True,
                 experimental_config=None, acc_events: bool = False):
        super().__init__(record_shapes=record_shapes, profile_memory=profile_memory, with_stack=with_stack,
                         with_flops=with_flops, with_modules=with_modules, enabled=enabled)

    @property
    def function_events(self) -> EventList:
        return self.events()

    @property
    def self_cpu_time_total(self) -> float:
        return self.events().self_cpu_time_total

    def table(self, sort_by: str | None = None, row_limit: int = 100, max_name_column_width: int = 55,
              header: str | None = None, top_level_events_only: bool = False) -> str:
        return self.key_averages().table(sort_by=sort_by, row_limit=row_limit,
                                         max_name_column_width=max_name_column_width, header=header)

    def __str__(self) -> str:
        return self.table()
