//go:build !amd64

package table

func sipKeys(v *[4]uint64, tails, keys []uint64) { sipKeysGeneric(v, tails, keys) }

const sipLanes = 1
