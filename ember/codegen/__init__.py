"""Code generators: kernel IR -> target source.  Pure: nothing here compiles or runs code.

    ember.codegen.loops   linearize(kernel): loops, passes, where each node goes, store order --
                          the skeleton both renderers spell; shared scalar facts (casts, identities)
    ember.codegen.llvm    kernel IR -> LLVM IR text (emit_module), host TargetInfo; op table LLVM_UNARY/BINARY
    ember.codegen.cuda    kernel IR -> CUDA C source + launch specs (emit_program); op table CUDA_UNARY/BINARY
"""
