/* SPDX-License-Identifier: MIT */
/* Context switch for AArch64 (AAPCS64: Linux, the BSDs, macOS).
 *
 * A suspended context is a stack pointer; everything else it needs is on its
 * stack. Only what the ABI makes callee-saved is kept: x19-x28, the frame
 * pointer x29, the link register x30 (where the context resumes), the low
 * halves d8-d15 of v8-v15, and the FPCR (rounding mode, flush-to-zero: the
 * control bits that are preserved across calls, as on x86-64). No signal mask
 * is touched, so there is no syscall on the way.
 *
 * Frame of a suspended context, from its saved stack pointer upward:
 *
 *     0   x19 x20     32  x23 x24     64  x27 x28     96  d8  d9     128  d12 d13
 *    16   x21 x22     48  x25 x26     80  x29 x30    112  d10 d11    144  d14 d15
 *   160   FPCR, 8 unused
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
#define FUNCTION(name) .type SYM(name), %function
#define END(name) .size SYM(name), . - SYM(name)
#endif

/* A landing pad for indirect calls when branch target identification is
 * enforced; a no-op hint on cores without it. */
#define BTI_C hint #34

#define FRAME 176

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
    BTI_C
    sub sp, sp, #FRAME
    .cfi_def_cfa_offset FRAME
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    .cfi_offset x19, -176
    .cfi_offset x20, -168
    .cfi_offset x21, -160
    .cfi_offset x22, -152
    .cfi_offset x23, -144
    .cfi_offset x24, -136
    .cfi_offset x25, -128
    .cfi_offset x26, -120
    .cfi_offset x27, -112
    .cfi_offset x28, -104
    .cfi_offset x29, -96
    .cfi_offset x30, -88
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    mrs x10, fpcr
    str x10, [sp, #160]

    mov x9, sp
    str x9, [x0]
    mov sp, x1

    /* Writing the FPCR can stall the pipeline, and the two contexts nearly
     * always agree on it: compare first. */
    ldr x11, [sp, #160]
    cmp x10, x11
    b.ne 2f
1:  ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    .cfi_remember_state
    add sp, sp, #FRAME
    .cfi_def_cfa_offset 0
    .cfi_restore x19
    .cfi_restore x20
    .cfi_restore x21
    .cfi_restore x22
    .cfi_restore x23
    .cfi_restore x24
    .cfi_restore x25
    .cfi_restore x26
    .cfi_restore x27
    .cfi_restore x28
    .cfi_restore x29
    .cfi_restore x30
    ret
    .cfi_restore_state        /* out of line: the frame is as it was at label 1 */
2:  msr fpcr, x11
    b 1b
    .cfi_endproc
    END(eddy__context_swap)

/* void *eddy__context_make(void *stack_top, void (*start)(void *), void *arg)
 * Builds the frame of a context that, on its first resumption, calls
 * start(arg) on the stack below stack_top, and returns its stack pointer.
 * start must never return. The new context inherits the caller's FPCR, as a
 * new thread inherits its creator's. */
    .globl SYM(eddy__context_make)
    HIDDEN(eddy__context_make)
    FUNCTION(eddy__context_make)
    .p2align 4
SYM(eddy__context_make):
    .cfi_startproc
    BTI_C
    and x0, x0, #~15
    sub x0, x0, #FRAME
    stp x2, x1, [x0, #0]      /* x19 = arg, x20 = start */
    stp xzr, xzr, [x0, #16]
    stp xzr, xzr, [x0, #32]
    stp xzr, xzr, [x0, #48]
    stp xzr, xzr, [x0, #64]
    adr x9, .Ltrampoline_entry
    stp xzr, x9, [x0, #80]    /* x29 = 0: frame-pointer walks end here; x30 = trampoline */
    stp xzr, xzr, [x0, #96]
    stp xzr, xzr, [x0, #112]
    stp xzr, xzr, [x0, #128]
    stp xzr, xzr, [x0, #144]
    mrs x9, fpcr              /* the new context inherits the creator's FPCR */
    stp x9, xzr, [x0, #160]
    ret
    .cfi_endproc
    END(eddy__context_make)

/* The first code a new context runs, entered by eddy__context_swap's ret
 * with sp == stack_top (16-byte aligned). The return address is marked
 * undefined so that debuggers and unwinders stop here, at the fiber's base.
 * A fresh context returns to .Ltrampoline_entry, past a nop, because
 * unwinders look up a return address minus one: that then still falls inside
 * this function. */
    .p2align 4
    FUNCTION(eddy__context_trampoline)
SYM(eddy__context_trampoline):
    .cfi_startproc
    .cfi_undefined x30
    nop
.Ltrampoline_entry:
    mov x0, x19
    blr x20
    brk #0x1                  /* start returned: it must not */
    .cfi_endproc
    END(eddy__context_trampoline)

#if defined(__linux__) && defined(__ELF__)
    .section .note.GNU-stack, "", %progbits
#endif
