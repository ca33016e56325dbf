/* SPDX-License-Identifier: MIT */
/* Context switch for x86-64, System V ABI (Linux, the BSDs, macOS).
 *
 * A suspended context is a stack pointer; everything else it needs is on its
 * stack. Only the callee-saved integer registers are kept: rbx, rbp, r12-r15.
 * The caller of eddy__context_swap has already saved every caller-saved
 * register it cares about, as for any call. No signal mask is touched: one
 * loop's fibers share their thread's mask, so there is no syscall on the way.
 *
 * The MXCSR and x87 control word (rounding mode, exception masks) are not
 * switched either: the fibers of a thread share its floating-point control
 * state as they share its signal mask (docs/decisions.md). Saving and
 * restoring them (stmxcsr/ldmxcsr, fnstcw/fldcw) measured 2.5 ns of a 5.3 ns
 * switch on AMD Zen.
 *
 * Frame of a suspended context, from its saved stack pointer upward:
 *
 *     0   r15
 *     8   r14
 *    16   r13
 *    24   r12
 *    32   rbx
 *    40   rbp
 *    48   return address
 *
 * C declarations (lib/fiber.c):
 *     void  eddy__context_swap(void **save_sp, void *load_sp);
 *     void *eddy__context_make(void *stack_top, void (*start)(void *), void *arg);
 */

#if defined(__APPLE__)
#define SYM(name) _##name
#define HIDDEN(name) .private_extern SYM(name)
#define FUNCTION(name)
#define END(name)
#else
#define SYM(name) name
#define HIDDEN(name) .hidden SYM(name)
#define FUNCTION(name) .type SYM(name), @function
#define END(name) .size SYM(name), . - SYM(name)
#endif

    .text

/* void eddy__context_swap(void **save_sp, void *load_sp)
 * Saves the running context, stores its stack pointer in *save_sp and resumes
 * the context whose stack pointer is load_sp. Returns when someone swaps back. */
    .globl SYM(eddy__context_swap)
    HIDDEN(eddy__context_swap)
    FUNCTION(eddy__context_swap)
    .p2align 4
SYM(eddy__context_swap):
    .cfi_startproc
    pushq %rbp
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbp, 0
    pushq %rbx
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbx, 0
    pushq %r12
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r12, 0
    pushq %r13
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r13, 0
    pushq %r14
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r14, 0
    pushq %r15
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r15, 0

    movq %rsp, (%rdi)
    movq %rsi, %rsp

    popq %r15
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r15
    popq %r14
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r14
    popq %r13
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r13
    popq %r12
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r12
    popq %rbx
    .cfi_adjust_cfa_offset -8
    .cfi_restore %rbx
    popq %rbp
    .cfi_adjust_cfa_offset -8
    .cfi_restore %rbp
    /* A plain ret, to keep the return stack predictor in step: every switch
     * is made from eddy__fiber_switch, so the address it predicts (this
     * call's return) is right, and so are the returns after it whenever the
     * two contexts came through the same call chain (two tasks yielding to
     * each other). A pop + jmp leaves the call's entry on the predictor's
     * stack and makes every later return of the chain miss. */
    ret
    .cfi_endproc
    END(eddy__context_swap)

/* void *eddy__context_make(void *stack_top, void (*start)(void *), void *arg)
 * Builds the frame of a context that, on its first resumption, calls
 * start(arg) on the stack below stack_top, and returns its stack pointer.
 * start must never return. */
    .globl SYM(eddy__context_make)
    HIDDEN(eddy__context_make)
    FUNCTION(eddy__context_make)
    .p2align 4
SYM(eddy__context_make):
    .cfi_startproc
    andq $-16, %rdi
    leaq -56(%rdi), %rax
    movq $0, 0(%rax)     /* r15 */
    movq $0, 8(%rax)     /* r14 */
    movq %rdx, 16(%rax)  /* r13 = arg */
    movq %rsi, 24(%rax)  /* r12 = start */
    movq $0, 32(%rax)    /* rbx */
    movq $0, 40(%rax)    /* rbp = 0: frame-pointer walks end here */
    leaq .Ltrampoline_entry(%rip), %rcx
    movq %rcx, 48(%rax)
    ret
    .cfi_endproc
    END(eddy__context_make)

/* The first code a new context runs, entered by eddy__context_swap's jump
 * with rsp == stack_top (16-byte aligned, as a call requires). The return
 * address is marked undefined so that debuggers and unwinders stop here, at
 * the fiber's base, instead of walking into whatever lies above the stack.
 * A fresh context returns to .Ltrampoline_entry, past a nop, because
 * unwinders look up a return address minus one: that then still falls inside
 * this function. */
    .p2align 4
    FUNCTION(eddy__context_trampoline)
SYM(eddy__context_trampoline):
    .cfi_startproc
    .cfi_undefined %rip
    nop
.Ltrampoline_entry:
    movq %r13, %rdi
    callq *%r12
    ud2                  /* start returned: it must not */
    .cfi_endproc
    END(eddy__context_trampoline)

#if defined(__linux__) && defined(__ELF__)
    .section .note.GNU-stack, "", @progbits
#endif
