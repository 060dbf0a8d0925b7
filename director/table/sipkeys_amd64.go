package table

import "golang.org/x/sys/cpu"

// useAVX512 selects the eight-lane SipHash finisher. VPROLQ needs AVX-512F
// and the zmm-wide VPSHUFB needs AVX-512BW.
var useAVX512 = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW

//go:noescape
func sipKeysAVX512(v *[4]uint64, tails []uint64, keys []uint64)

func sipKeys(v *[4]uint64, tails, keys []uint64) {
	if useAVX512 {
		sipKeysAVX512(v, tails, keys)
		return
	}
	sipKeysGeneric(v, tails, keys)
}

// sipLanes is how many final blocks sipKeysAVX512 takes per iteration.
const sipLanes = 16
