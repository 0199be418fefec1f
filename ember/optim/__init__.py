"""ember.optim: optimizers and learning-rate schedulers, with torch.optim's API and update rules.

    opt = ember.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sched = ember.optim.lr_scheduler.StepLR(opt, step_size=10)
"""
from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam
from .adamw import AdamW
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "lr_scheduler"]
