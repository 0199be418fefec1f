"""The pieces of ember.nn.functional, one file per family; ember/nn/functional.py re-exports them."""
