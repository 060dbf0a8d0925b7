#include "textflag.h"

// One SipRound on two groups of eight lanes: Z0..Z3 hold v0..v3 of the
// first group and Z4..Z7 those of the second. The groups are independent,
// so interleaving them hides the latency of each round's dependency chain.
#define SIPROUND2 \
	VPADDQ Z1, Z0, Z0; VPADDQ Z5, Z4, Z4; \
	VPROLQ $13, Z1, Z1; VPROLQ $13, Z5, Z5; \
	VPXORQ Z0, Z1, Z1; VPXORQ Z4, Z5, Z5; \
	VPROLQ $32, Z0, Z0; VPROLQ $32, Z4, Z4; \
	VPADDQ Z3, Z2, Z2; VPADDQ Z7, Z6, Z6; \
	VPROLQ $16, Z3, Z3; VPROLQ $16, Z7, Z7; \
	VPXORQ Z2, Z3, Z3; VPXORQ Z6, Z7, Z7; \
	VPADDQ Z3, Z0, Z0; VPADDQ Z7, Z4, Z4; \
	VPROLQ $21, Z3, Z3; VPROLQ $21, Z7, Z7; \
	VPXORQ Z0, Z3, Z3; VPXORQ Z4, Z7, Z7; \
	VPADDQ Z1, Z2, Z2; VPADDQ Z5, Z6, Z6; \
	VPROLQ $17, Z1, Z1; VPROLQ $17, Z5, Z5; \
	VPXORQ Z2, Z1, Z1; VPXORQ Z6, Z5, Z5; \
	VPROLQ $32, Z2, Z2; VPROLQ $32, Z6, Z6

// func sipKeysAVX512(v *[4]uint64, tails []uint64, keys []uint64)
// For each final block m in tails (sixteen at a time: len(tails) is a
// multiple of 16 and len(keys) >= len(tails)), finishes SipHash-2-4 from
// state v and stores the result with its bytes reversed.
TEXT ·sipKeysAVX512(SB), NOSPLIT, $0-56
	MOVQ v+0(FP), AX
	MOVQ tails_base+8(FP), SI
	MOVQ tails_len+16(FP), CX
	MOVQ keys_base+32(FP), DI
	VPBROADCASTQ 0(AX), Z8
	VPBROADCASTQ 8(AX), Z9
	VPBROADCASTQ 16(AX), Z10
	VPBROADCASTQ 24(AX), Z11
	MOVQ $0xff, BX
	VPBROADCASTQ BX, Z12
	VMOVDQU64 bswap64<>(SB), Z13
	SHRQ $4, CX
	JZ   done

loop:
	VMOVDQU64 (SI), Z14
	VMOVDQU64 64(SI), Z15
	VMOVDQA64 Z8, Z0
	VMOVDQA64 Z9, Z1
	VMOVDQA64 Z10, Z2
	VPXORQ    Z14, Z11, Z3
	VMOVDQA64 Z8, Z4
	VMOVDQA64 Z9, Z5
	VMOVDQA64 Z10, Z6
	VPXORQ    Z15, Z11, Z7
	SIPROUND2
	SIPROUND2
	VPXORQ Z14, Z0, Z0
	VPXORQ Z15, Z4, Z4
	VPXORQ Z12, Z2, Z2
	VPXORQ Z12, Z6, Z6
	SIPROUND2
	SIPROUND2
	SIPROUND2
	SIPROUND2
	VPXORQ Z1, Z0, Z0
	VPXORQ Z5, Z4, Z4
	VPXORQ Z3, Z2, Z2
	VPXORQ Z7, Z6, Z6
	VPXORQ Z2, Z0, Z0
	VPXORQ Z6, Z4, Z4
	VPSHUFB Z13, Z0, Z0
	VPSHUFB Z13, Z4, Z4
	VMOVDQU64 Z0, (DI)
	VMOVDQU64 Z4, 64(DI)
	ADDQ $128, SI
	ADDQ $128, DI
	DECQ CX
	JNZ  loop

done:
	VZEROUPPER
	RET

// Byte-reversal mask for VPSHUFB: reverses each quadword in every lane.
DATA bswap64<>+0(SB)/8, $0x0001020304050607
DATA bswap64<>+8(SB)/8, $0x08090a0b0c0d0e0f
DATA bswap64<>+16(SB)/8, $0x0001020304050607
DATA bswap64<>+24(SB)/8, $0x08090a0b0c0d0e0f
DATA bswap64<>+32(SB)/8, $0x0001020304050607
DATA bswap64<>+40(SB)/8, $0x08090a0b0c0d0e0f
DATA bswap64<>+48(SB)/8, $0x0001020304050607
DATA bswap64<>+56(SB)/8, $0x08090a0b0c0d0e0f
GLOBL bswap64<>(SB), RODATA|NOPTR, $64
