package dataplane

import (
	"strings"
	"testing"

	"github.com/glb-project/glb/director/table"
)

// BenchmarkApplySwap measures one table swap: content, a new inner map
// filled with batch updates, one outer update. Most of it is the kernel:
// the batch update, and the RCU grace period every update of a map-in-map
// waits for (after which no program can still see the old table).
func BenchmarkApplySwap(b *testing.B) {
	d := openTest(b, Config{GatewayMAC: macGateway})
	a := buildConfig(b, testConfig, nil)
	cfgB, err := table.Parse([]byte(strings.Replace(testConfig, "000102030405060708090a0b0c0d0e0f", "ffeeddccbbaa99887766554433221100", 1)))
	if err != nil {
		b.Fatal(err)
	}
	bb := buildTables(cfgB, nil)
	apply(b, d, a)
	b.ResetTimer()
	for i := range b.N {
		cfg := a
		if i%2 == 0 {
			cfg = bb
		}
		if _, err := d.Apply(cfg.tables); err != nil {
			b.Fatal(err)
		}
	}
}
