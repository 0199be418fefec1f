"""Code generators: kernel IR -> target source.  Pure: nothing here compiles or runs code.

    ember.codegen.llvm       kernel IR -> LLVM IR text (emit_module), host TargetInfo
    ember.codegen.llvm_math  vectorisable polynomial transcendentals used by llvm.py
    ember.codegen.cuda       kernel IR -> CUDA C source + launch specs (emit_program)
"""
