/*
 * Which SIMD level this machine can run: CPUID says what the processor
 * implements, XGETBV says which register state the operating system saves on
 * a context switch. Both are needed. A CPU with AVX-512 under an OS (or a
 * hypervisor) that does not enable ZMM state faults on the first ZMM
 * instruction, and CPUID alone would not tell.
 *
 * A level is granted only when every extension its kernel file is compiled
 * with is present (simd/CMakeLists.txt), not just the ones it calls
 * explicitly: with -mbmi2 the compiler may emit SHLX/SARX anywhere in that
 * file, with -mpopcnt a POPCNT. So
 *
 *   SIMD_AVX2    AVX, AVX2, FMA, POPCNT, BMI2;  XCR0: SSE + AVX state
 *   SIMD_AVX512  the above + AVX512 F, BW, DQ, VL, VPOPCNTDQ, VNNI;
 *                XCR0: also opmask, ZMM0-15 upper halves, ZMM16-31
 *
 * AVX-512 parts without VPOPCNTDQ or VNNI (Skylake-SP has neither, Cascade
 * Lake lacks VPOPCNTDQ) run the AVX2 kernels: one AVX-512 table without
 * fallbacks inside keeps every kernel free of feature branches, and those
 * parts lose little by running AVX2.
 *
 * Detection is not cached here: dispatch.c calls this once under
 * pthread_once. Under a hypervisor CPUID traps and can cost microseconds.
 */
#include "simd/simd.h"

#if defined(__x86_64__) || defined(__i386__)

#include <cpuid.h>

/* CPUID.1:ECX */
#define CPU1_ECX_FMA (1u << 12)
#define CPU1_ECX_POPCNT (1u << 23)
#define CPU1_ECX_OSXSAVE (1u << 27)
#define CPU1_ECX_AVX (1u << 28)
/* CPUID.(7,0):EBX */
#define CPU7_EBX_AVX2 (1u << 5)
#define CPU7_EBX_BMI2 (1u << 8)
#define CPU7_EBX_AVX512F (1u << 16)
#define CPU7_EBX_AVX512DQ (1u << 17)
#define CPU7_EBX_AVX512BW (1u << 30)
#define CPU7_EBX_AVX512VL (1u << 31)
/* CPUID.(7,0):ECX */
#define CPU7_ECX_AVX512VNNI (1u << 11)
#define CPU7_ECX_AVX512VPOPCNTDQ (1u << 14)
/* XCR0: state components the OS saves and restores. */
#define XCR0_SSE (1u << 1)
#define XCR0_AVX (1u << 2)
#define XCR0_OPMASK (1u << 5)
#define XCR0_ZMM_HI256 (1u << 6)
#define XCR0_HI16_ZMM (1u << 7)

static int has_all(unsigned reg, unsigned bits) { return (reg & bits) == bits; }

/* XGETBV by its opcode bytes rather than the mnemonic or _xgetbv(): it needs
 * no -mxsave for this baseline file and assembles with any binutils. Only
 * called once CPUID has reported OSXSAVE; otherwise the instruction faults. */
static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

simd_level simd_level_hw(void) {
    unsigned a1, b1, c1, d1;
    unsigned a7, b7, c7, d7;
    if (!__get_cpuid(1, &a1, &b1, &c1, &d1))
        return SIMD_SCALAR;
    /* Returns 0 when leaf 7 is beyond the processor's maximum leaf. */
    if (!__get_cpuid_count(7, 0, &a7, &b7, &c7, &d7))
        return SIMD_SCALAR;
    if (!has_all(c1, CPU1_ECX_OSXSAVE | CPU1_ECX_AVX))
        return SIMD_SCALAR;

    uint64_t xcr0 = read_xcr0();
    if (!has_all((unsigned)xcr0, XCR0_SSE | XCR0_AVX))
        return SIMD_SCALAR;
    if (!has_all(c1, CPU1_ECX_FMA | CPU1_ECX_POPCNT) || !has_all(b7, CPU7_EBX_AVX2 | CPU7_EBX_BMI2))
        return SIMD_SCALAR;

    const unsigned zmm_state = XCR0_OPMASK | XCR0_ZMM_HI256 | XCR0_HI16_ZMM;
    const unsigned avx512_ebx =
        CPU7_EBX_AVX512F | CPU7_EBX_AVX512DQ | CPU7_EBX_AVX512BW | CPU7_EBX_AVX512VL;
    const unsigned avx512_ecx = CPU7_ECX_AVX512VNNI | CPU7_ECX_AVX512VPOPCNTDQ;
    if (has_all((unsigned)xcr0, zmm_state) && has_all(b7, avx512_ebx) && has_all(c7, avx512_ecx))
        return SIMD_AVX512;
    return SIMD_AVX2;
}

#else /* not x86 */

simd_level simd_level_hw(void) { return SIMD_SCALAR; }

#endif
