package dataplane

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/glb-project/glb/director/table"
	"github.com/glb-project/glb/internal/bpffs/bpffstest"
	"github.com/glb-project/glb/internal/testenv"
)

var testSrcIP = netip.MustParseAddr("192.0.2.10")

// testConfig has one table per situation the golden tests need.
const testConfig = `{"tables": [
 {"name": "two", "hash_key": "000102030405060708090a0b0c0d0e0f", "seed": "49a3d861d661ae5ab06ed9326871a2f5", "hops": 2,
  "binds": [{"ip": "10.100.0.0/29", "proto": "tcp", "port": 443},
            {"ip": "10.100.0.0/29", "proto": "udp", "port_start": 53, "port_end": 54},
            {"ip": "fd00:100::/64", "proto": "tcp", "port": 443},
            {"ip": "fd00:100::/64", "proto": "udp", "port": 443}],
  "backends": [{"ip": "10.1.0.1", "state": "active"}, {"ip": "10.1.0.2", "state": "active"},
               {"ip": "10.1.0.3", "state": "active"}, {"ip": "10.1.0.4", "state": "active"}]},
 {"name": "three", "hash_key": "f0e0d0c0b0a090807060504030201000", "seed": "0123456789abcdef0123456789abcdef", "hops": 3,
  "binds": [{"ip": "10.100.1.1", "proto": "tcp", "port": 80}],
  "backends": [{"ip": "10.2.0.1", "state": "active"}, {"ip": "10.2.0.2", "state": "active"},
               {"ip": "10.2.0.3", "state": "draining"}, {"ip": "10.2.0.4", "state": "active", "healthy": false},
               {"ip": "10.2.0.5", "state": "filling"}]},
 {"name": "four", "hash_key": "11111111111111112222222222222222", "seed": "33333333333333334444444444444444", "hops": 4,
  "binds": [{"ip": "10.100.2.1", "proto": "tcp", "port": 80}, {"ip": "fd00:200::1", "proto": "tcp", "port": 80}],
  "backends": [{"ip": "10.3.0.1", "state": "active"}, {"ip": "10.3.0.2", "state": "active"},
               {"ip": "10.3.0.3", "state": "active"}, {"ip": "10.3.0.4", "state": "active"},
               {"ip": "10.3.0.5", "state": "active"}, {"ip": "10.3.0.6", "state": "active"}]},
 {"name": "dead", "hash_key": "55555555555555556666666666666666", "seed": "77777777777777778888888888888888",
  "binds": [{"ip": "10.100.3.1", "proto": "tcp", "port": 80}],
  "backends": [{"ip": "10.4.0.1", "state": "inactive"}, {"ip": "10.4.0.2", "state": "inactive"}]},
 {"name": "ports", "hash_key": "99999999999999990000000000000000", "seed": "abababababababababababababababab",
  "hash_fields": ["src_addr", "dst_addr", "src_port", "dst_port"],
  "binds": [{"ip": "10.100.4.1", "proto": "tcp", "port": 443}, {"ip": "10.100.4.1", "proto": "tcp", "port": 8443},
            {"ip": "fd00:400::1", "proto": "tcp", "port": 443}],
  "backends": [{"ip": "10.5.0.1", "state": "active"}, {"ip": "10.5.0.2", "state": "active"}, {"ip": "10.5.0.3", "state": "active"}]},
 {"name": "split", "hash_key": "0f0e0d0c0b0a09080706050403020100", "seed": "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
  "binds": [{"ip": "10.100.5.1", "proto": "tcp", "port": 443}],
  "backends": [{"ip": "10.6.0.1", "state": "active"}, {"ip": "10.6.0.2", "state": "active"}]},
 {"name": "split-b", "hash_key": "0f0e0d0c0b0a090807060504030201ff", "seed": "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdce",
  "binds": [{"ip": "10.100.5.0/24", "proto": "tcp", "port": 22}],
  "backends": [{"ip": "10.7.0.1", "state": "active"}, {"ip": "10.7.0.2", "state": "active"}]}
]}`

// built is a parsed config with its tables built.
type built struct {
	cfg    *table.Config
	tables []Table
	byName map[string]Table
}

func buildConfig(tb testing.TB, js string, health table.Health) built {
	tb.Helper()
	cfg, err := table.Parse([]byte(js))
	if err != nil {
		tb.Fatalf("parse config: %v", err)
	}
	return buildTables(cfg, health)
}

func buildTables(cfg *table.Config, health table.Health) built {
	b := built{cfg: cfg, byName: map[string]Table{}}
	for i := range cfg.Tables {
		spec := &cfg.Tables[i]
		t := Table{Spec: spec, Built: table.Build(spec, health)}
		b.tables = append(b.tables, t)
		b.byName[spec.Name] = t
	}
	return b
}

// openTest loads the director (unpinned unless pin is set) and closes it
// when the test ends.
func openTest(tb testing.TB, cfg Config) *Dataplane {
	tb.Helper()
	testenv.RequireRoot(tb)
	if !cfg.SrcIP.IsValid() {
		cfg.SrcIP = testSrcIP
	}
	d, err := Open(cfg)
	if err != nil {
		tb.Fatalf("open dataplane: %+v", err)
	}
	tb.Cleanup(func() {
		if err := d.Close(); err != nil {
			tb.Errorf("close dataplane: %v", err)
		}
	})
	return d
}

func apply(tb testing.TB, d *Dataplane, b built) Result {
	tb.Helper()
	res, err := d.Apply(b.tables)
	if err != nil {
		tb.Fatalf("apply: %v", err)
	}
	return res
}

// xdpMD is struct xdp_md, the context of an XDP test run.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// runPacket runs the program once on a frame and returns its action and
// output frame.
func runPacket(tb testing.TB, prog *ebpf.Program, in []byte, ctx *xdpMD) (uint32, []byte) {
	tb.Helper()
	out := make([]byte, len(in)+256)
	opts := &ebpf.RunOptions{Data: in, DataOut: out}
	if ctx != nil {
		ctx.DataEnd = uint32(len(in))
		opts.Context = *ctx
	}
	ret, err := prog.Run(opts)
	if err != nil {
		tb.Fatalf("run program: %v", err)
	}
	return ret, opts.DataOut
}

// bpffsDir mounts a private BPF filesystem for one test and removes it,
// with everything pinned in it, when the test ends.
func bpffsDir(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(bpffstest.Mount(tb), "glb")
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// runOpts prepares a test run of in, with out as the output buffer.
func runOpts(in, out []byte) *ebpf.RunOptions {
	return &ebpf.RunOptions{Data: in, DataOut: out[:cap(out)]}
}
