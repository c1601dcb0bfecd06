// Compiling hot CPU loops for more than the baseline ISA without assuming it at build time.
#pragma once

// A function marked EMBER_ISA_CLONES is compiled twice, for AVX2 and for the baseline
// x86-64 ISA, and the loader picks the one the CPU runs (GCC/Clang target_clones). FMA stays
// off in both, so both give the same bits.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define EMBER_ISA_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define EMBER_ISA_CLONES
#endif

#define EMBER_ALWAYS_INLINE inline __attribute__((always_inline))
