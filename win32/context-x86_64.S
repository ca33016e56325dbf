/* SPDX-License-Identifier: MIT */
/* Context switch for x86-64 Windows (the Microsoft x64 ABI), the counterpart
 * of lib/context/x86_64-sysv.S.
 *
 * A suspended context is a stack pointer; everything else is on its stack.
 * Kept: the callee-saved registers of this ABI (rbx, rbp, rdi, rsi, r12-r15
 * and xmm6-xmm15), and the three TIB fields that describe the running stack:
 * StackBase (gs:0x08), StackLimit (gs:0x10) and DeallocationStack (gs:0x1478).
 * Windows reads those to decide whether an address is on the stack (stack
 * probes, exception dispatch, RtlUnwind's checks), so they must follow the
 * switch. Everything else Windows keeps per thread (the fiber data, the
 * exception list, which x64 does not use) is shared by a loop's tasks, as the
 * signal mask is on POSIX. Faster than Windows fibers (SwitchToFiber also
 * switches the fiber-local storage and the floating-point state), and the
 * task stacks stay eddy's own (lib/stack.c) rather than CreateFiber's.
 *
 * Frame of a suspended context, from its saved stack pointer upward:
 *
 *     0 .. 159   xmm6 .. xmm15 (16 bytes each; 16-byte aligned)
 *     160        StackBase
 *     168        StackLimit
 *     176        DeallocationStack
 *     184        r15
 *     192        r14
 *     200        r13
 *     208        r12
 *     216        rsi
 *     224        rdi
 *     232        rbx
 *     240        rbp
 *     248        return address
 *
 * C declarations (lib/fiber.c):
 *     void eddy__context_swap(void **save_sp, void *load_sp);
 *     void eddy__context_entry(void);   the address a new frame returns to
 * A new frame is built in C (lib/fiber.c), which knows the stack's bounds.
 */

    .text

/* void eddy__context_swap(void **save_sp [rcx], void *load_sp [rdx]) */
    .globl eddy__context_swap
    .def eddy__context_swap; .scl 2; .type 32; .endef
    .p2align 4
eddy__context_swap:
    pushq %rbp
    pushq %rbx
    pushq %rdi
    pushq %rsi
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $184, %rsp
    movq %gs:0x1478, %rax
    movq %rax, 176(%rsp)
    movq %gs:0x10, %rax
    movq %rax, 168(%rsp)
    movq %gs:0x08, %rax
    movq %rax, 160(%rsp)
    movaps %xmm6, 0(%rsp)
    movaps %xmm7, 16(%rsp)
    movaps %xmm8, 32(%rsp)
    movaps %xmm9, 48(%rsp)
    movaps %xmm10, 64(%rsp)
    movaps %xmm11, 80(%rsp)
    movaps %xmm12, 96(%rsp)
    movaps %xmm13, 112(%rsp)
    movaps %xmm14, 128(%rsp)
    movaps %xmm15, 144(%rsp)

    movq %rsp, (%rcx)
    movq %rdx, %rsp

    movaps 0(%rsp), %xmm6
    movaps 16(%rsp), %xmm7
    movaps 32(%rsp), %xmm8
    movaps 48(%rsp), %xmm9
    movaps 64(%rsp), %xmm10
    movaps 80(%rsp), %xmm11
    movaps 96(%rsp), %xmm12
    movaps 112(%rsp), %xmm13
    movaps 128(%rsp), %xmm14
    movaps 144(%rsp), %xmm15
    movq 160(%rsp), %rax
    movq %rax, %gs:0x08
    movq 168(%rsp), %rax
    movq %rax, %gs:0x10
    movq 176(%rsp), %rax
    movq %rax, %gs:0x1478
    addq $184, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rsi
    popq %rdi
    popq %rbx
    popq %rbp
    ret

/* The first code a new context runs: its frame (lib/fiber.c) holds the
 * start function in r12 and its argument in r13, and returns here with rsp
 * 16-byte aligned. The callee gets its 32 bytes of shadow space, as the
 * ABI requires of every call. The unwind info says this function's caller
 * returns to the word just above the shadow space, which lib/fiber.c
 * zeroes: stack walks (exception dispatch, CaptureStackBackTrace,
 * debuggers) end here, at the task's base, instead of wandering off. */
    .globl eddy__context_entry
    .def eddy__context_entry; .scl 2; .type 32; .endef
    .p2align 4
eddy__context_entry:
    .seh_proc eddy__context_entry
    subq $32, %rsp
    .seh_stackalloc 32
    .seh_endprologue
    movq %r13, %rcx
    callq *%r12
    ud2                  /* start returned: it must not */
    .seh_endproc
