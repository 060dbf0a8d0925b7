package dataplane

import (
	"encoding/binary"
	"net"
	"sort"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/glb-project/glb/internal/nstest"
)

// bpfFTestXDPLiveFrames is BPF_F_TEST_XDP_LIVE_FRAMES: every repetition
// runs on a fresh frame from a page pool, and XDP_TX really transmits, so
// the program never sees its own output (which a plain Repeat would).
const bpfFTestXDPLiveFrames = 1 << 1

// floorProgram is the baseline of DESIGN.md §11: move the head by the
// two-hop GUE overhead and return XDP_TX, nothing else.
func floorProgram(tb testing.TB) *ebpf.Program {
	tb.Helper()
	return loadAsm(tb, asm.Instructions{
		asm.Mov.Imm(asm.R2, -40),
		asm.FnXdpAdjustHead.Call(),
		asm.JNE.Imm(asm.R0, 0, "drop"),
		asm.Mov.Imm(asm.R0, xdpTX),
		asm.Return(),
		asm.Mov.Imm(asm.R0, xdpDrop).WithSymbol("drop"),
		asm.Return(),
	})
}

// passProgram returns XDP_PASS: the floor of the bind-miss path.
func passProgram(tb testing.TB) *ebpf.Program {
	tb.Helper()
	return loadAsm(tb, asm.Instructions{asm.Mov.Imm(asm.R0, xdpPass), asm.Return()})
}

func dropProgram(tb testing.TB) *ebpf.Program {
	tb.Helper()
	return loadAsm(tb, asm.Instructions{asm.Mov.Imm(asm.R0, xdpDrop), asm.Return()})
}

// restoring wraps target in a program that first writes hdr (the input
// frame's Ethernet header) back to the start of the frame, then tail-calls
// target. Live-frame mode re-initialises a recycled frame's pointers but
// not its bytes (kernel 6.18): the director's encapsulation overwrites the
// bytes where the Ethernet header was, and without this the next run on
// that page would see garbage. Both the director and the floor are
// wrapped, so the prologue is in both sides of the ratio.
func restoring(tb testing.TB, hdr []byte, target *ebpf.Program) *ebpf.Program {
	tb.Helper()
	pa, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.ProgramArray, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		tb.Fatalf("create program array: %v", err)
	}
	tb.Cleanup(func() { pa.Close() })
	if err := pa.Put(uint32(0), target); err != nil {
		tb.Fatalf("put tail call target: %v", err)
	}
	le := func(i int) int64 { return int64(int32(binary.LittleEndian.Uint32(hdr[i:]))) }
	return loadAsm(tb, asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // data
		asm.LoadMem(asm.R3, asm.R1, 4, asm.Word), // data_end
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 14),
		asm.JGT.Reg(asm.R4, asm.R3, "out"),
		asm.StoreImm(asm.R2, 0, le(0), asm.Word),
		asm.StoreImm(asm.R2, 4, le(4), asm.Word),
		asm.StoreImm(asm.R2, 8, le(8), asm.Word),
		asm.StoreImm(asm.R2, 12, int64(binary.LittleEndian.Uint16(hdr[12:])), asm.Half),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, pa.FD()),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnTailCall.Call(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"), // XDP_ABORTED
		asm.Return(),
	})
}

func loadAsm(tb testing.TB, insns asm.Instructions) *ebpf.Program {
	tb.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, AttachType: ebpf.AttachXDP, License: "MIT", Instructions: insns})
	if err != nil {
		tb.Fatalf("load program: %+v", err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

// liveBench is a throw-away namespace with a veth pair: programs run on
// b0 in live-frame mode, XDP_TX sends to b1, whose XDP program drops
// everything (an XDP program on the peer is what lets veth take
// XDP_TX frames).
type liveBench struct {
	ns      *nstest.NS
	ifindex int
}

func newLiveBench(b *testing.B) *liveBench {
	ns := nstest.New(b, "bn")
	peer := nstest.New(b, "bp")
	nstest.Veth(b, ns, "b0", peer, "b1")
	drop := dropProgram(b)
	lb := &liveBench{ns: ns}
	err := peer.Do(b, func() error {
		iface, err := net.InterfaceByName("b1")
		if err != nil {
			return err
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: drop, Interface: iface.Index})
		if err != nil {
			return err
		}
		b.Cleanup(func() { l.Close() })
		return nil
	})
	if err != nil {
		b.Fatalf("attach drop program: %v", err)
	}
	err = ns.Do(b, func() error {
		iface, err := net.InterfaceByName("b0")
		lb.ifindex = iface.Index
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return lb
}

// run runs prog on n live frames of pkt and returns the wall time.
func (lb *liveBench) run(b *testing.B, prog *ebpf.Program, pkt []byte, n int) time.Duration {
	var d time.Duration
	err := lb.ns.Do(b, func() error {
		opts := &ebpf.RunOptions{
			Data:      pkt,
			Repeat:    uint32(n),
			Flags:     bpfFTestXDPLiveFrames,
			BatchSize: 64,
			Context:   xdpMD{DataEnd: uint32(len(pkt)), IngressIfindex: uint32(lb.ifindex)},
		}
		start := time.Now()
		_, err := prog.Run(opts)
		d = time.Since(start)
		return err
	})
	if err != nil {
		b.Fatalf("live run: %v", err)
	}
	return d
}

// BenchmarkDirectorLive measures the director against the floor program
// (head adjust + XDP_TX) in the same process, on the packet mix of the
// director issue, with BPF_F_TEST_XDP_LIVE_FRAMES. The two alternate in
// 20 rounds; it reports the mean ns per packet of both, the median of the
// per-round ratios (robust against other load on the machine), and the
// programs' own run time from the kernel's BPF stats (transmit excluded).
// The bind-miss case passes packets to the stack; its floor is a program
// that only returns XDP_PASS.
//
//	sudo go test -run '^$' -bench DirectorLive -benchtime 2000000x ./director/dataplane/
func BenchmarkDirectorLive(b *testing.B) {
	lb := newLiveBench(b)
	var d *Dataplane
	if err := lb.ns.Do(b, func() error {
		var err error
		d, err = Open(Config{SrcIP: testSrcIP, GatewayMAC: macGateway})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	apply(b, d, buildConfig(b, testConfig, nil))
	floor, pass := floorProgram(b), passProgram(b)

	replyV6 := ip6{src: "fd00:100::1", dst: client6, proto: protoTCP}.packet(tcp(443, 40001, tcpACK, make([]byte, 64)...))
	cases := []struct {
		name   string
		pkt    []byte
		floor  *ebpf.Program
		reason string
	}{
		{"v4_tcp", v4(client4, "10.100.0.3", protoTCP, tcp(40000, 443, tcpACK, make([]byte, 64)...)), floor, "tx"},
		{"v6_tcp", v6(client6, "fd00:100::1", protoTCP, tcp(40001, 443, tcpACK, make([]byte, 64)...)), floor, "tx"},
		{"icmp_ptb", ether(packetTooBig(replyV6)), floor, "tx"},
		{"bind_miss", v4(client4, "10.200.0.1", protoTCP, tcp(40000, 443, tcpACK, make([]byte, 64)...)), pass, "pass_not_vip"},
	}
	// Program-only run times (bpf_stats), while this is open.
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enable BPF run-time stats: %v", err)
	}
	b.Cleanup(func() { stats.Close() })

	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			const rounds = 20
			chunk := max(b.N/rounds, 1)
			fl := restoring(b, c.pkt[:14], c.floor)
			dir := restoring(b, c.pkt[:14], d.Program())
			// Warm up both (page pools, caches).
			lb.run(b, fl, c.pkt, 1000)
			lb.run(b, dir, c.pkt, 1000)
			before := ends(b, d)
			fs0, ds0 := progStats(b, fl), progStats(b, dir)
			var tFloor, tDir time.Duration
			ratios := make([]float64, 0, rounds)
			b.ResetTimer()
			for range rounds {
				f := lb.run(b, fl, c.pkt, chunk)
				d := lb.run(b, dir, c.pkt, chunk)
				tFloor += f
				tDir += d
				ratios = append(ratios, float64(d)/float64(f))
			}
			b.StopTimer()
			fs1, ds1 := progStats(b, fl), progStats(b, dir)
			// Every frame must have taken the path the case is about (see
			// restoring). A run the Go runtime's signals interrupt (EINTR)
			// is started again whole by cilium/ebpf, so a program may run
			// more often than asked: count its real runs (BPF stats).
			dirRuns, floorRuns := ds1.RunCount-ds0.RunCount, fs1.RunCount-fs0.RunCount
			after := ends(b, d)
			var total uint64
			for reason, v := range after {
				total += v - before[reason]
			}
			if got := after[c.reason] - before[c.reason]; got != dirRuns || got != total || got < uint64(rounds*chunk) {
				b.Fatalf("%d of %d director runs (%d asked for) ended %s, %d ended otherwise", got, dirRuns, rounds*chunk, c.reason, total-got)
			}
			sort.Float64s(ratios)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(tDir.Nanoseconds())/float64(dirRuns), "director-ns/pkt")
			b.ReportMetric(float64(tFloor.Nanoseconds())/float64(floorRuns), "floor-ns/pkt")
			b.ReportMetric(ratios[len(ratios)/2], "ratio")
			// The programs alone (prologue included, transmit excluded).
			b.ReportMetric(float64(ds1.Runtime-ds0.Runtime)/float64(ds1.RunCount-ds0.RunCount), "director-prog-ns")
			b.ReportMetric(float64(fs1.Runtime-fs0.Runtime)/float64(fs1.RunCount-fs0.RunCount), "floor-prog-ns")
		})
	}
}

func progStats(b *testing.B, p *ebpf.Program) *ebpf.ProgramStats {
	s, err := p.Stats()
	if err != nil {
		b.Fatalf("program stats: %v", err)
	}
	return s
}
